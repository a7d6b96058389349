#!/usr/bin/env bash
# Build the project's container images with podman, where no container registry can be
# reached: the Python base image is bootstrapped from Debian's own packages and given the
# name the Dockerfiles' FROM lines use, then the images build with --pull=never.
#
#   scripts/images.sh base       # the local python:3.11-slim-bookworm (once; --rebuild to redo)
#   scripts/images.sh gateway    # Dockerfile.serve's gateway target, its size printed
#   scripts/images.sh train      # Dockerfile.train on the local base, TensorFlow from PyPI
#
# Runs as root (debootstrap, podman's storage). Package downloads inside the builds use
# the host network and trust the host's CA bundle, which is copied into the base image.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE="docker.io/library/python:3.11-slim-bookworm"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
# The host's Debian mirror (deb822 sources), else Debian's own.
MIRROR="$(sed -n 's/^URIs: *\(.*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

# Debian's podman inside this kind of sandbox: runc, cgroupfs, no rlimits raised.
export CONTAINERS_CONF="$PWD/scripts/containers.conf"
PODMAN=(podman)

build_base() {
    if [ "${1:-}" != "--rebuild" ] && "${PODMAN[@]}" image exists "$BASE_IMAGE"; then
        echo "base: $BASE_IMAGE exists"
        return
    fi
    local root
    root="$(mktemp -d)"
    trap 'rm -rf "$root"' RETURN
    echo "base: debootstrap bookworm from $MIRROR"
    debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
        bookworm "$root" "$MIRROR" >/dev/null
    # What an image does not need: downloaded packages, package lists, documentation.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
        "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* \
        "$root"/usr/share/info/*
    cp "$CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$root/etc/pip.conf"
    tar -C "$root" -c . | "${PODMAN[@]}" import \
        --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' - "$BASE_IMAGE" >/dev/null
    echo "base: $BASE_IMAGE ($(image_megabytes "$BASE_IMAGE") MB)"
}

image_megabytes() {
    "${PODMAN[@]}" image inspect --format '{{.Size}}' "$1" | awk '{printf "%d", $1 / 1e6}'
}

build() {
    local tag=$1
    shift
    "${PODMAN[@]}" build --pull=never --network host --format docker -t "$tag" "$@" .
    echo "built $tag: $(image_megabytes "$tag") MB"
}

case "${1:-}" in
base) build_base "${2:-}" ;;
gateway)
    build_base
    build "mnist-serving/gateway:$VERSION" -f Dockerfile.serve --target gateway
    ;;
train)
    build_base
    build "mnist-serving/train:$VERSION" -f Dockerfile.train --build-arg "BASE_IMAGE=$BASE_IMAGE"
    ;;
*)
    echo "usage: $0 base [--rebuild] | gateway | train" >&2
    exit 2
    ;;
esac
