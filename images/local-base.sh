#!/usr/bin/env bash
# Make a Python base image from Debian's packages, for a machine that reaches Debian's and PyPI's package
# repositories but no image registry: debootstrap a minimal Debian, add Python 3.11 with its headers and a venv on
# PATH (so `python` and `pip` behave as in the public python:3.11-slim image the Dockerfiles default to), and import
# it into the local container storage that buildah and podman share.
#
#   images/local-base.sh [REF]      default REF: localhost/olmoflow-base:bookworm-py3.11
#
# Then `make images IMAGE_BASE=REF` (or BUILD_ARGS="--build-arg PYTHON_IMAGE=REF" images/build.sh ...) builds on it.
# Environment: MIRROR (default: the first Debian URI of this host's apt sources), SUITE (default: bookworm).
# Needs root (debootstrap, chroot) and podman.
set -euo pipefail

REF="${1:-localhost/olmoflow-base:bookworm-py3.11}"
SUITE="${SUITE:-bookworm}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ "$(id -u)" == 0 ]] || { echo "error: images/local-base.sh needs root (debootstrap, chroot)" >&2; exit 1; }
for tool in debootstrap podman; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed (apt-get install debootstrap podman)" >&2; exit 1; }
done
export CONTAINERS_CONF="${CONTAINERS_CONF-$ROOT/images/containers.conf}"
[[ -n "$CONTAINERS_CONF" ]] || unset CONTAINERS_CONF

if [[ -z "${MIRROR:-}" ]]; then
  # The mirror this host's apt already uses (deb822 or one-line sources), so the base reaches what apt reaches.
  MIRROR="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}')"
  [[ -n "$MIRROR" ]] || MIRROR="$(awk '/^deb / && $3 == "'"$SUITE"'" {print $2; exit}' /etc/apt/sources.list 2>/dev/null)"
  [[ -n "$MIRROR" ]] || { echo "error: no Debian mirror in /etc/apt sources; set MIRROR" >&2; exit 1; }
fi

rootfs="$(mktemp -d /var/tmp/olmoflow-base.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
start=$SECONDS
# python3-dev: the headers Triton's launcher stubs compile against (the public slim image has them too).
debootstrap --variant=minbase --include=python3,python3-venv,python3-dev,ca-certificates \
  "$SUITE" "$rootfs" "$MIRROR" > "$rootfs.log" 2>&1 \
  || { tail -20 "$rootfs.log" >&2; echo "error: debootstrap $SUITE from $MIRROR failed (log: $rootfs.log)" >&2; exit 1; }
rm -f "$rootfs.log"
# A venv owns `python` and `pip`: Debian's own Python refuses pip installs (PEP 668).
chroot "$rootfs" /usr/bin/python3 -m venv /opt/python
chroot "$rootfs" /opt/python/bin/pip --version
chroot "$rootfs" apt-get clean
# What the slim public images leave out too: apt's lists, docs, man pages, translations.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/* "$rootfs"/tmp/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/info/*

tar -C "$rootfs" --numeric-owner -cf - . | podman import \
  --change 'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python"]' \
  --message "olmoflow local base: debootstrap $SUITE minbase + python3 venv" - "$REF" > /dev/null
echo "built $REF in $((SECONDS - start)) s: $(podman run --rm "$REF" python --version)"
