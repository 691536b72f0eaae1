#!/bin/sh
echo worker
