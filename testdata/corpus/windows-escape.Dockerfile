# escape=`
FROM mcr.microsoft.com/windows/servercore:ltsc2022
SHELL ["powershell", "-Command", "$ErrorActionPreference = 'Stop';"]
ENV APP_HOME=C:\app
WORKDIR C:\app
COPY . C:\app\
RUN New-Item -ItemType Directory -Force -Path C:\data ; `
    Write-Host 'done'
ENV TOOLS C:\tools``
USER ContainerAdministrator
