FROM ubuntu:24.04
RUN rm -f /etc/apt/apt.conf.d/docker-clean; \
    echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' > /etc/apt/apt.conf.d/keep-cache
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt,sharing=locked \
    apt-get update && apt-get --no-install-recommends install -y gcc make
RUN --mount=type=tmpfs,target=/tmp \
    --mount=type=bind,from=busybox:1.36,source=/bin/busybox,target=/usr/local/bin/busybox \
    busybox true
COPY --parents ./scripts/*.sh /opt/
COPY --exclude=*.md --exclude=docs/ . /opt/app/
