# kiln's job image: the static kiln binary, busybox (a POSIX shell and core tools,
# so GitLab's Docker executor runs `script:` with no `entrypoint:` override) and a
# CA bundle. Nothing else. kiln builds it itself, unprivileged:
#
#   ci/build-static                      # the static binary, at dist/kiln
#   dist/kiln build --context . --destination registry.example/kiln:dev
#
# The bases are build args, so this file builds from Docker Hub, from a mirror
# (--registry-mirror, --registry-map), through GitLab's Dependency Proxy
# (--dependency-proxy auto) or from local copies (--build-arg BUSYBOX_IMAGE=…).
# BUSYBOX_IMAGE needs a static /bin/busybox; CA_IMAGE needs
# /etc/ssl/certs/ca-certificates.crt.
#
# `--target emulators` builds the emulator variant: the same image plus static
# qemu-user emulators (Debian's qemu-user-static, from QEMU_IMAGE, a Debian
# image) where kiln looks for them, so RUN steps of another architecture run
# with no binfmt_misc handler and no flag.
ARG BUSYBOX_IMAGE=busybox:1.37.0-musl
ARG CA_IMAGE=alpine:3.21
ARG QEMU_IMAGE=debian:bookworm-slim

FROM ${BUSYBOX_IMAGE} AS busybox
FROM ${CA_IMAGE} AS ca

# --no-install-recommends: without binfmt-support nothing is registered.
FROM ${QEMU_IMAGE} AS qemu
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null \
 && mkdir /emulators \
 && for arch in aarch64 arm riscv64 ppc64le s390x; do cp "/usr/bin/qemu-$arch-static" /emulators/; done

FROM scratch AS job
ARG KILN_VERSION=dev
ARG KILN_REVISION=unknown
COPY --from=busybox /bin/busybox /bin/busybox
COPY --from=ca /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --chmod=0755 dist/kiln /usr/local/bin/kiln
# The applets as symlinks; root's account; kaniko's names for the binary, its
# config dir and its CA bundle, so an unchanged kaniko job runs kiln.
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN <<EOF
set -eu
mkdir -p /etc /root /tmp /kaniko/.docker /kaniko/ssl/certs
chmod 1777 /tmp
chmod 0700 /root
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >/etc/passwd
printf 'root:x:0:\nnogroup:x:65534:\n' >/etc/group
ln -s /usr/local/bin/kiln /kaniko/executor
ln -s /usr/local/bin/kiln /kaniko/warmer
ln -s kiln /usr/local/bin/executor
ln -s /etc/ssl/certs/ca-certificates.crt /kaniko/ssl/certs/ca-certificates.crt
EOF
ENV PATH=/usr/local/bin:/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    DOCKER_CONFIG=/kaniko/.docker
LABEL org.opencontainers.image.title="kiln" \
      org.opencontainers.image.description="Build OCI images from Dockerfiles in unprivileged CI jobs" \
      org.opencontainers.image.version="${KILN_VERSION}" \
      org.opencontainers.image.revision="${KILN_REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
CMD ["/bin/sh"]

# The emulator variant: kiln (/usr/local/bin/kiln) finds these in
# /usr/local/libexec/kiln/emulators.
FROM job AS emulators
COPY --from=qemu /emulators/ /usr/local/libexec/kiln/emulators/

# The default target: the job image.
FROM job
