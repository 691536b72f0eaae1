# syntax=docker/dockerfile:1

ARG GO_VERSION=1.22.5
ARG BASE_DEBIAN_DISTRO="bookworm"
ARG GOLANG_IMAGE="golang:${GO_VERSION}-${BASE_DEBIAN_DISTRO}"
ARG XX_VERSION=1.4.0

FROM --platform=$BUILDPLATFORM ${GOLANG_IMAGE} AS base
COPY --from=tonistiigi/xx:${XX_VERSION} / /
ARG DEBIAN_FRONTEND=noninteractive
RUN echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' > /etc/apt/apt.conf.d/keep-cache
ARG TARGETPLATFORM
ARG DOCKER_STATIC=${TARGETPLATFORM#linux/amd64}
ENV GOTOOLCHAIN=local

FROM base AS criu
ARG CRIU_VERSION=v3.19
RUN --mount=type=cache,sharing=locked,id=moby-criu-aptlib,target=/var/lib/apt \
    --mount=type=cache,sharing=locked,id=moby-criu-aptcache,target=/var/cache/apt \
        apt-get update && apt-get install -y --no-install-recommends \
            libnet-dev libprotobuf-c-dev libprotobuf-dev libnl-3-dev libcap-dev \
            protobuf-compiler protobuf-c-compiler python3-protobuf
ADD --keep-git-dir=true https://github.com/checkpoint-restore/criu.git#${CRIU_VERSION} /usr/src/criu
WORKDIR /usr/src/criu
RUN <<EOT
  set -e
  make
  install -D -m 0755 criu/criu /build/criu
EOT
