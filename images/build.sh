#!/usr/bin/env bash
# Build one olmoflow image with docker or buildah, tagged REGISTRY/IMAGE:TAG.
#
#   images/build.sh IMAGE TAG        IMAGE: trainer | curate | tracking; TAG: usually the package version
#
# Environment:
#   REGISTRY        repository prefix (default: olmoflow), so the default image is olmoflow/trainer:TAG
#   BUILDER         docker | buildah (default: docker when its daemon answers, else buildah)
#   BUILD_ARGS      extra --build-arg words, e.g. "--build-arg TORCH_INDEX_URL=..."
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

echo "building $REF with $builder"
# shellcheck disable=SC2086  # BUILD_ARGS is a list of words on purpose
case "$builder" in
  docker)  docker build ${BUILD_ARGS:-} -t "$REF" -f "$ctx/Dockerfile" "$ctx" ;;
  buildah) buildah build ${BUILD_ARGS:-} --layers -t "$REF" -f "$ctx/Dockerfile" "$ctx" ;;
  *) echo "error: BUILDER must be docker or buildah (got '$builder')" >&2; exit 2 ;;
esac
echo "built $REF"
