#!/usr/bin/env bash
# Build one olmoflow image with docker or buildah, tagged REGISTRY/IMAGE:TAG.
#
#   images/build.sh IMAGE TAG        IMAGE: trainer | curate | tracking; TAG: usually the package version
#
# Environment:
#   REGISTRY        repository prefix (default: olmoflow), so the default image is olmoflow/trainer:TAG
#   BUILDER         docker | buildah (default: docker when its daemon answers, else buildah)
#   BUILD_ARGS      extra --build-arg words, e.g. "--build-arg PYTHON_IMAGE=localhost/olmoflow-base:bookworm-py3.11
#                   --build-arg TORCH_VARIANT=cpu" (images/local-base.sh makes that base where no registry is reachable)
#   CA_BUNDLE       a CA bundle file pip inside the build must trust (default: the host pip's cert, from $PIP_CERT or
#                   its config); buildah only
#   TORCH_WHEELS    a folder holding the torch wheel to install (default: the host pip's find-links when it is a
#                   folder); buildah only. Both are mounted into the build's RUN steps, never copied into a layer.
#   CONTEXT_HASH=1  print the build context's hash (what the image's org.olmoflow.context label holds) and exit:
#                   how a test tells an image built from this tree from a stale one
#   CONTAINERS_CONF buildah's settings (default: images/containers.conf, what these dev/CI machines need; empty =
#                   the system's)
#
# The build context is staged in a temporary folder with only what the Dockerfile copies, so a local .venv or
# .olmoflow store (gigabytes) is never sent to the builder, and it works the same for docker and buildah.
set -euo pipefail

usage() { echo "usage: images/build.sh {trainer|curate|tracking} TAG" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
IMAGE="$1"; TAG="$2"
case "$IMAGE" in trainer|curate|tracking) ;; *) echo "error: unknown image '$IMAGE'" >&2; usage ;; esac
[[ "$TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || { echo "error: '$TAG' is not a valid image tag" >&2; exit 2; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REF="${REGISTRY:-olmoflow}/$IMAGE:$TAG"

if [[ -n "${BUILDER:-}" ]]; then
  builder="$BUILDER"
elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  builder=docker
elif command -v buildah >/dev/null; then
  builder=buildah
else
  echo "error: no image builder: install docker (with a running daemon) or buildah, or set BUILDER" >&2
  exit 1
fi

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$ROOT/images/$IMAGE/Dockerfile" "$ctx/Dockerfile"
cp "$ROOT/requirements.lock" "$ctx/"
if [[ "$IMAGE" != tracking ]]; then
  cp "$ROOT/pyproject.toml" "$ctx/"
  cp -r "$ROOT/configs" "$ctx/configs"
  # Sources only: no caches from a local run.
  (cd "$ROOT" && tar --exclude='__pycache__' --exclude='*.pyc' -cf - olmoflow) | tar -xf - -C "$ctx"
fi
if [[ "$IMAGE" == curate ]]; then
  # The pipeline's code: the registration Job compiles it with the release's settings.
  (cd "$ROOT" && tar --exclude='__pycache__' --exclude='*.pyc' --exclude='*.yaml' -cf - pipelines components) \
    | tar -xf - -C "$ctx"
fi

# One hash of every file the build sees: the image carries it as a label, so its code can be matched to a tree.
context_hash="$(cd "$ctx" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
if [[ -n "${CONTEXT_HASH:-}" ]]; then echo "$context_hash"; exit 0; fi

# What the host's pip is set up with (a TLS-inspecting proxy's CA, a local wheel folder) reaches pip in the build.
pip_setting() {  # the host pip's global.NAME from its config files; empty without one (or without pip)
  python3 -m pip config list 2>/dev/null | sed -n "s/^global\.$1='\(.*\)'\$/\1/p" | tail -1
}
host_args=()
ca="${CA_BUNDLE-${PIP_CERT:-$(pip_setting cert)}}"
wheels="${TORCH_WHEELS-${PIP_FIND_LINKS:-$(pip_setting find-links)}}"
[[ -d "$wheels" ]] || wheels=""
if [[ "$builder" == buildah ]]; then
  export CONTAINERS_CONF="${CONTAINERS_CONF-$ROOT/images/containers.conf}"
  [[ -n "$CONTAINERS_CONF" ]] || unset CONTAINERS_CONF
  if [[ -n "$ca" ]]; then
    [[ -f "$ca" ]] || { echo "error: CA_BUNDLE $ca is not a file" >&2; exit 2; }
    host_args+=(-v "$ca:/mnt/host/ca.crt:ro" --build-arg PIP_CERT=/mnt/host/ca.crt)
  fi
  if [[ -n "$wheels" && "$IMAGE" != tracking ]]; then
    host_args+=(-v "$wheels:/mnt/host/wheels:ro" --build-arg TORCH_FIND_LINKS=/mnt/host/wheels)
  fi
fi

echo "building $REF with $builder"
start=$SECONDS
# shellcheck disable=SC2086  # BUILD_ARGS is a list of words on purpose
case "$builder" in
  docker)  docker build ${BUILD_ARGS:-} --label "org.olmoflow.context=$context_hash" -t "$REF" -f "$ctx/Dockerfile" "$ctx" ;;
  buildah) buildah build ${BUILD_ARGS:-} "${host_args[@]}" --label "org.olmoflow.context=$context_hash" --layers -t "$REF" -f "$ctx/Dockerfile" "$ctx" ;;
  *) echo "error: BUILDER must be docker or buildah (got '$builder')" >&2; exit 2 ;;
esac
echo "built $REF in $((SECONDS - start)) s"
