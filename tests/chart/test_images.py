"""images/: build.sh drives docker or buildah with a small staged context and the right tag (checked with stand-in
builders that record what they were given), and the Dockerfiles keep their promises: pinned versions, a non-root
user, an import smoke test run as that user."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "images" / "build.sh"
IMAGES = ("trainer", "curate", "tracking")

FAKE_BUILDER = """#!/usr/bin/env bash
# Records its argv and the build context's file list, like a builder that succeeds.
[ "$1" = info ] && exit ${INFO_RC:-0}
echo "$(basename "$0") $*" >> "$RECORD/argv"
ctx="${@: -1}"
(cd "$ctx" && find . -type f | sort) > "$RECORD/context"
cp "$ctx/Dockerfile" "$RECORD/Dockerfile"
"""


def run_build(tmp_path: Path, image: str, tag: str, builders=("docker",), **env) -> subprocess.CompletedProcess:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for b in builders:
        (bindir / b).write_text(FAKE_BUILDER)
        (bindir / b).chmod(0o755)
    record = tmp_path / "record"
    record.mkdir(exist_ok=True)
    full_env = {"PATH": f"{bindir}:/usr/bin:/bin", "RECORD": str(record), "HOME": str(tmp_path), **env}
    return subprocess.run(["bash", str(BUILD), image, tag], env=full_env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("image", IMAGES)
def test_docker_build_gets_the_tag_and_a_small_context(tmp_path, image):
    proc = run_build(tmp_path, image, "0.1.0", REGISTRY="registry.example.org/ml")
    assert proc.returncode == 0, proc.stderr
    argv = (tmp_path / "record" / "argv").read_text().split()
    assert argv[:2] == ["docker", "build"] and argv[argv.index("-t") + 1] == f"registry.example.org/ml/{image}:0.1.0"
    files = (tmp_path / "record" / "context").read_text().split()
    assert "./Dockerfile" in files and "./requirements.lock" in files
    assert not [f for f in files if f.startswith(("./.venv", "./.olmoflow", "./tests")) or "__pycache__" in f]
    if image == "tracking":
        assert not [f for f in files if f.startswith("./olmoflow/")]
    else:
        assert "./olmoflow/__init__.py" in files and "./pyproject.toml" in files
        assert "./olmoflow/cluster/register.py" in files
    # the curate image carries the pipeline's code (the registration Job compiles it), never a compiled YAML
    assert ("./pipelines/model_flow.py" in files) == ("./components/stages.py" in files) == (image == "curate")
    assert not [f for f in files if f.endswith((".yaml", ".yml")) and f.startswith(("./pipelines", "./components"))]
    assert (tmp_path / "record" / "Dockerfile").read_text() == (ROOT / "images" / image / "Dockerfile").read_text()


def test_buildah_when_docker_has_no_daemon(tmp_path):
    proc = run_build(tmp_path, "tracking", "1.2.3", builders=("docker", "buildah"), INFO_RC="1")
    assert proc.returncode == 0, proc.stderr
    argv = (tmp_path / "record" / "argv").read_text().split()
    assert argv[:2] == ["buildah", "build"] and "olmoflow/tracking:1.2.3" in argv
    assert "building olmoflow/tracking:1.2.3 with buildah" in proc.stdout


@pytest.mark.parametrize("image", IMAGES)
def test_buildah_gets_the_hosts_ca_bundle_and_torch_wheels_mounted_not_copied(tmp_path, image):
    ca, wheels = tmp_path / "ca.crt", tmp_path / "wheels"
    ca.write_text("cert")
    wheels.mkdir()
    proc = run_build(tmp_path, image, "0.1.0", builders=("buildah",), PIP_CERT=str(ca), PIP_FIND_LINKS=str(wheels))
    assert proc.returncode == 0, proc.stderr
    argv = (tmp_path / "record" / "argv").read_text().split()
    assert f"{ca}:/mnt/host/ca.crt:ro" in argv and "PIP_CERT=/mnt/host/ca.crt" in argv
    assert (f"{wheels}:/mnt/host/wheels:ro" in argv) == ("TORCH_FIND_LINKS=/mnt/host/wheels" in argv) == \
        (image != "tracking")
    assert "./ca.crt" not in (tmp_path / "record" / "context").read_text().split()
    proc = run_build(tmp_path, image, "0.1.0", builders=("buildah",), CA_BUNDLE=str(tmp_path / "nope"))
    assert proc.returncode == 2 and "CA_BUNDLE" in proc.stderr


def test_bad_arguments_and_missing_inputs_fail_clearly(tmp_path):
    proc = run_build(tmp_path, "notebook", "0.1.0")
    assert proc.returncode == 2 and "error: unknown image 'notebook'" in proc.stderr
    proc = run_build(tmp_path, "trainer", "bad tag")
    assert proc.returncode == 2 and "is not a valid image tag" in proc.stderr
    # No builder on PATH (only what the script runs before it looks for one), even where buildah is installed.
    bare = tmp_path / "bare"
    (bare / "tools").mkdir(parents=True)
    for tool in ("bash", "dirname"):
        (bare / "tools" / tool).symlink_to(shutil.which(tool))
    proc = subprocess.run(["bash", str(BUILD), "trainer", "0.1.0"], env={"PATH": str(bare / "tools")},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "no image builder" in proc.stderr


@pytest.mark.parametrize("image", IMAGES)
def test_dockerfile_pins_versions_runs_as_non_root_and_smoke_tests(image):
    text = (ROOT / "images" / image / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    base = re.search(r"ARG PYTHON_IMAGE=(\S+)", text)[1]
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base), base  # an exact Python patch release
    for line in joined.splitlines():
        if "pip install" in line:
            # every install is held to the lock: as constraints, or the lock itself (its whole closure) --no-deps,
            # or the package alone --no-deps (the lock holds its dependencies)
            held = "requirements.lock" in line and ("-c " in line or "--no-deps -r" in line)
            assert held or re.search(r"pip install --no-deps (--no-build-isolation )?\. ", line), line
            named = re.findall(r'"([A-Za-z][\w.-]*(?:\[[\w,]+\])?)(==\S+)?"', line)
            assert all(pin for _, pin in named), line  # packages outside the lock carry an exact pin
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] == "1000"
    after_user = joined[joined.rindex("USER "):]
    assert re.search(r"^RUN python -c \"import ", after_user, re.M)  # the smoke test runs as that user


def test_image_uid_matches_what_job_pods_and_the_chart_run_as():
    import yaml

    from olmoflow.cluster.jobs import RUN_AS_UID

    values = yaml.safe_load((ROOT / "charts" / "olmoflow" / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == RUN_AS_UID == 1000
    for image in IMAGES:
        assert "useradd --uid 1000 --gid 1000" in (ROOT / "images" / image / "Dockerfile").read_text()


def test_build_script_is_executable():
    assert os.access(BUILD, os.X_OK) and os.access(ROOT / "scripts" / "install_k8s_tools.sh", os.X_OK)
