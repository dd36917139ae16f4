"""The command line: bad input fails before any compute with one clear line and the right exit code."""

import os
import subprocess
import sys

import pytest


def olmoflow(cwd, *args, env=None):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/m.db", **(env or {})}
    return subprocess.run([sys.executable, "-m", "olmoflow.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.mark.parametrize("args,exit_code,message", [
    (["run", "--config", "smoke", "--set", "model.n_kv_heads=3"], 2, "must be divisible by n_kv_heads (3)"),
    (["run", "--config", "smoke", "--set", "pretrain.nope=1"], 2, "config error: pretrain.nope: unknown key"),
    (["run", "--config", "smoke", "--to", "curatee"], 2, "--to: unknown stage 'curatee'"),
    (["run", "--config", "smoke", "--from", "eval", "--to", "sft", "--init", "x"], 2, "comes after --to"),
    (["run", "--config", "nosuch"], 2, "unknown preset 'nosuch'"),
    (["stage", "pretrain", "--config", "smoke"], 1, "stage pretrain: missing input 'dataset'"),
])
def test_bad_input_exits_with_one_line(tmp_path, args, exit_code, message):
    res = olmoflow(tmp_path, *args)
    assert res.returncode == exit_code, res.stderr
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / ".olmoflow" / "store").exists()


@pytest.mark.parametrize("command", [["run"], ["stage", "curate"]])
def test_a_missing_sources_folder_is_one_line(tmp_path, command):
    res = olmoflow(tmp_path, *command, "--config", "smoke", "--set", f"curate.sources_dir={tmp_path}/none")
    assert res.returncode == 1
    assert res.stderr.strip() == (f"olmoflow: curate: sources_dir '{tmp_path}/none' is not a folder (run `make data`, "
                                  "or set curate.sources_dir)")


def test_a_missing_required_source_names_it(tmp_path):
    (tmp_path / "sources").mkdir()
    res = olmoflow(tmp_path, "stage", "curate", "--config", "smoke", "--set", f"curate.sources_dir={tmp_path}/sources")
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "source 'python-stdlib'" in res.stderr and "make data" in res.stderr


def test_unreachable_s3_fails_fast(tmp_path):
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
           "AWS_DEFAULT_REGION": "us-east-1"}
    res = olmoflow(tmp_path, "run", "--config", "smoke", "--set", "flow.store=s3://bucket/flows", env=env)
    assert res.returncode == 1
    assert "cannot reach S3 endpoint http://127.0.0.1:1" in res.stderr


def test_config_dry_run_prints_resolved_values(tmp_path):
    res = olmoflow(tmp_path, "config", "--config", "smoke", "--set", "pretrain.lr=0.0123")
    assert res.returncode == 0 and "lr: 0.0123" in res.stdout
