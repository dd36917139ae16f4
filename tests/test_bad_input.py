"""Bad input, tried broadly (hypothesis): `--set` overrides, inline JSON `--config` and artifact manifests. Every
invalid input is one line naming the key or the file (config: a ConfigError, exit 2; manifest: an ArtifactError
naming the artifact), nothing else escapes, and nothing is written. The properties run in process (the CLI costs
seconds a call); a few real CLI calls check the exit code, the one-line stderr and that nothing was written."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from olmoflow.artifacts import MANIFEST, ArtifactError, open_artifact
from olmoflow.config import SECTIONS, ConfigError, FlowConfig, from_dict, load_config
from olmoflow.storage import join, storage_for

REPO = Path(__file__).resolve().parents[1]
# Hypothesis caches what it learns in ./.hypothesis; the tests write nothing into the checkout (read when first used).
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "olmoflow-hypothesis"))
# Fixed examples (the suite must not flake) and no example database written into the tree.
FAST = settings(max_examples=40, deadline=None, derandomize=True, database=None)

SECTION_NAMES = sorted(FlowConfig.model_fields)
NUMERIC = sorted(f"{s}.{k}" for s, f in FlowConfig.model_fields.items()
                 for k, g in f.annotation.model_fields.items() if g.annotation in (int, float))
EXAMPLE = itertools.count()
BASE = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and msg.strip() == msg, msg
    return msg


def names(msg: str, *candidates: str) -> bool:
    return any(c and c in msg for c in candidates)


# ---- --set overrides -------------------------------------------------------------------------------------------

identifier = st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True)
not_a_number = st.one_of(
    st.text(st.characters(categories=["L"]), min_size=1, max_size=12).filter(
        lambda v: isinstance(yaml.safe_load(v), str) and v.lower().strip() not in ("inf", "infinity", "nan")),
    st.lists(st.integers(), max_size=3).map(str), st.just("null"), st.just("{a: 1}"))


@FAST
@given(section=st.sampled_from(SECTION_NAMES + sorted(SECTIONS)), leaf=identifier, value=st.text(max_size=8))
def test_an_unknown_key_is_named(section, leaf, value):
    fields = FlowConfig.model_fields[SECTIONS.get(section, section)].annotation.model_fields
    assume(leaf not in fields)
    with pytest.raises(ConfigError) as e:
        load_config("tiny", [f"{section}.{leaf}={value}"])
    assert one_line(e) == f"config error: {SECTIONS.get(section, section)}.{leaf}: unknown key"


@FAST
@given(key=st.sampled_from(NUMERIC), value=not_a_number)
def test_a_value_of_the_wrong_type_is_named(key, value):
    with pytest.raises(ConfigError) as e:
        load_config("tiny", [f"{key}={value}"])
    assert one_line(e).startswith(f"config error: {key}: ")


@FAST
@given(item=st.text(max_size=30))
def test_any_override_is_a_config_or_one_line_naming_it(item):
    """Arbitrary text as one `--set`: a valid config (the rare valid override), or one line naming the override's
    key (or the item itself); never another exception."""
    try:
        load_config("tiny", [item])
    except ConfigError as e:
        msg = str(e)
        assert len(msg.splitlines()) == 1 and msg.startswith("config error: "), msg
        key = item.split("=", 1)[0].strip()
        first = key.split(".")[0]
        assert names(msg, repr(item), key, SECTIONS.get(first, first)), msg


# ---- inline JSON --config --------------------------------------------------------------------------------------

def json_values(keys: st.SearchStrategy[str]) -> st.SearchStrategy:
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
                        max_leaves=8)


json_value = json_values(st.text(max_size=6))
# Printable, non-empty keys: the message names them as they are (an empty key or a line break is shown quoted or
# escaped: the test below).
config_key = st.text(min_size=1, max_size=8).filter(str.isprintable)
config_value = json_values(config_key)


@FAST
@given(config=st.dictionaries(st.sampled_from(SECTION_NAMES) | config_key, config_value, min_size=1, max_size=3))
def test_an_inline_json_config_is_valid_or_one_line_naming_a_key(config):
    try:
        load_config(json.dumps(config))
    except ConfigError as e:
        msg = str(e)
        assert len(msg.splitlines()) == 1 and msg.startswith("config error: "), msg
        assert names(msg, *(str(k) for k in config)), msg


@FAST
@given(key=st.sampled_from(NUMERIC), value=config_value)
def test_a_wrong_value_inside_a_valid_preset_as_json_is_named(key, value):
    assume(not isinstance(value, (int, float)))  # (bools are ints to pydantic's lax mode; none of them fit)
    s, k = key.split(".")
    config = json.loads(json.dumps(BASE))
    config.setdefault(s, {})[k] = value
    config.pop("base", None)
    with pytest.raises(ConfigError) as e:
        from_dict(config)
    assert one_line(e).startswith(f"config error: {key}: "), str(e.value)


# Three gaps the properties above found: inline JSON that does not parse (once a traceback), an empty key (once
# "config error: : unknown key", naming nothing), a key holding a line break (once a two-line error).
@pytest.mark.parametrize("config,overrides", [
    ('{"pretrain": {"lr": 1', []), ('{"pretrain": }', []), (json.dumps({"": 1}), []), (json.dumps({"a\rb": 1}), []),
    (json.dumps({"pretrain": {"x\u2028y": 1}}), []), ("tiny", ["pretrain.a\rb=1"])])
def test_unparsable_json_an_empty_key_and_a_line_break_are_one_line(config, overrides):
    with pytest.raises(ConfigError) as e:
        load_config(config, overrides)
    msg = one_line(e)
    assert "--config" in msg or "''" in msg or "\\r" in msg or "\\u2028" in msg, msg


# ---- artifact manifests ------------------------------------------------------------------------------------------

def _entry(data: bytes) -> dict:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


VALID = {"stage": "pretrain", "kind": "checkpoint", "fingerprint": "0" * 16, "files": {"w.bin": _entry(b"w")}}
field_values = {"stage": json_value, "kind": json_value, "fingerprint": json_value, "files": json_value,
                "inputs": json_value, "config": json_value}
hostile_key = st.one_of(st.text(max_size=20), st.sampled_from(["/etc/passwd", "../x", "a/../../b", "a\\..\\b", "",
                                                               ".", "a//b", "a/\n", "\u2028x"]))
manifests = st.one_of(
    json_value,  # not even an object
    st.builds(lambda f, v: {**VALID, f: v}, st.sampled_from(sorted(field_values)), json_value),
    st.builds(lambda k, meta: {**VALID, "files": {k: meta}}, hostile_key, st.just(_entry(b"w")) | json_value),
    st.builds(lambda name, spec: {**VALID, "inputs": {name: spec}}, st.text(max_size=6), json_value),
)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@settings(FAST, max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(manifest=manifests)
def test_a_local_manifest_is_valid_or_one_line_naming_the_artifact(tmp_path, manifest):
    uri = tmp_path / "store" / "flow" / "pretrain" / ("0" * 16)
    uri.mkdir(parents=True, exist_ok=True)
    (uri / "w.bin").write_bytes(b"w")
    (uri / MANIFEST).write_text(json.dumps(manifest))
    before = _tree(tmp_path)
    try:
        art = open_artifact(str(uri), cache_dir=tmp_path / "cache")
    except ArtifactError as e:
        msg = str(e)
        assert len(msg.splitlines()) == 1 and msg.startswith(str(uri)), msg
    else:
        assert manifest == {**VALID, **manifest} and art.path == uri
    assert _tree(tmp_path) == before  # nothing written, wherever a manifest points


@settings(FAST, max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(manifest=manifests)
def test_an_s3_manifest_is_valid_or_refused_before_any_download(s3_uri, tmp_path, manifest):
    uri = join(s3_uri, "flow", "pretrain", "0" * 16)
    store = storage_for(uri)
    store.write_bytes(join(uri, "w.bin"), b"w")
    store.write_bytes(join(uri, MANIFEST), json.dumps(manifest).encode())
    cache = tmp_path / f"cache-{next(EXAMPLE)}"  # each example its own cache: a download by one is no leak by the next
    try:
        open_artifact(uri, cache_dir=cache)
    except ArtifactError as e:
        msg = str(e)
        assert len(msg.splitlines()) == 1 and msg.startswith(uri), msg
        assert not [p for p in cache.rglob("*") if p.is_file()]  # refused before a download, or the copy dropped
    outside = [p for p in tmp_path.rglob("*")
               if p.is_file() and not p.relative_to(tmp_path).parts[0].startswith("cache-")]
    assert outside == []


# ---- the real CLI: exit codes, one line on stderr, nothing written -------------------------------------------

def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "olmoflow.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("args,named", [
    (["run", "--set", "pretrain.lr=fast"], "pretrain.lr"),
    (["run", "--set", "pretrain.nope=1"], "pretrain.nope"),
    (["config", "--config", json.dumps({"pretrain": {"steps": "many"}})], "pretrain.steps"),
    (["config", "--config", "no-such-preset"], "no-such-preset"),
])
def test_the_cli_exits_2_with_one_line_and_writes_nothing(tmp_path, args, named):
    run = _cli(*args, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "Traceback" not in run.stderr, run.stderr
    assert list(tmp_path.iterdir()) == []
