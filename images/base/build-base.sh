#!/usr/bin/env bash
# Make the CPU image's base from Debian's own packages when the public python:3.11 image cannot be
# pulled (no registry but Debian's and PyPI reachable): Debian bookworm minbase + python3, python3-venv,
# ca-certificates and passwd (useradd), imported into Docker as $BASE_TAG.
#
# The machine's CA bundle (the one pip here is configured with) is copied in, so pip inside
# `docker build --network host` trusts the same TLS endpoints as pip on this machine. Nothing else from
# the host goes in. Needs root (or fakeroot/unshare mode) for mmdebstrap; Debian package: mmdebstrap.
#
# usage: images/base/build-base.sh [TAG]      (default amnet-base:bookworm-py3.11)
set -euo pipefail
BASE_TAG="${1:-${BASE_TAG:-amnet-base:bookworm-py3.11}}"
SUITE="${DEBIAN_SUITE:-bookworm}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

command -v mmdebstrap >/dev/null || { echo "build-base: mmdebstrap missing: apt-get install -y mmdebstrap" >&2; exit 2; }
command -v docker >/dev/null || { echo "build-base: docker missing: apt-get install -y docker.io" >&2; exit 2; }
[ -r "$CA_BUNDLE" ] || { echo "build-base: no CA bundle at $CA_BUNDLE; set CA_BUNDLE=FILE" >&2; exit 2; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
  --customize-hook="cp '$CA_BUNDLE' \"\$1/etc/ssl/certs/ca-certificates.crt\"" \
  --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
  "$SUITE" "$work/rootfs.tar"
docker import --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' \
  --message "amnet base: Debian $SUITE minbase + python3 (mmdebstrap)" "$work/rootfs.tar" "$BASE_TAG" >/dev/null
docker run --rm "$BASE_TAG" python3 -c "import venv, ssl, sys; print('build-base: python', sys.version.split()[0])"
echo "build-base: $BASE_TAG ($(docker image inspect -f '{{.Size}}' "$BASE_TAG" | awk '{printf "%.0f MB", $1/1e6}')) in $(( $(date +%s) - start )) s"
