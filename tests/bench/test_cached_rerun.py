"""The cached re-run benchmark's helpers (bench/cached_rerun.py): its command line, what it reads from
`olmoflow run`'s output, when a work dir is reused, and the ratios it prints. No flow runs and no time is judged."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
spec = importlib.util.spec_from_file_location("cached_rerun", BENCH / "cached_rerun.py")
cached_rerun = importlib.util.module_from_spec(spec)
sys.modules["cached_rerun"] = cached_rerun
spec.loader.exec_module(cached_rerun)

STDOUT = """olmoflow: flow run 20261207-001544-4696 (curate, ..., eval) — store /tmp/x/store
00:15:47.042 - INFO - Executing task \x1b[96m'curate'\x1b[0m
    00:15:47 curate: cached at /tmp/x/store/smoke/curate/acd14a4b5a3d5557
00:15:47.376 - INFO - Task \x1b[96m'curate'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m
00:15:47.382 - INFO - Executing task \x1b[96m'pretrain'\x1b[0m

stage         status  wall  metric                  uri
------------  ------  ----  ----------------------  -----------------------------------------------------
curate        cached  0.0s  train_tokens=2.397e+05  /tmp/x/store/smoke/curate/acd14a4b5a3d5557
pretrain      ran     9.1s  val_loss=5.704          /tmp/x/store/smoke/pretrain/7d6da491f303ab62
midtrain      skipped
"""


def test_command_line():
    args = cached_rerun.parse_args([])
    assert args.workdir is None and args.repeats == 3 and args.sources.name == "sources"
    args = cached_rerun.parse_args(["--workdir", "w", "--repeats", "5", "--floor-repeats", "2"])
    assert (args.workdir, args.repeats, args.floor_repeats) == (Path("w"), 5, 2)
    with pytest.raises(SystemExit):
        cached_rerun.parse_args(["--repeats", "0"])


def test_flow_command_writes_into_the_work_dir(tmp_path):
    command, env = cached_rerun.flow_command(tmp_path, tmp_path / "sources")
    assert command[1:6] == ["-m", "olmoflow.cli", "run", "--config", "smoke"]
    assert f"flow.store={tmp_path}/store" in command and f"curate.sources_dir={tmp_path / 'sources'}" in command
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path}/mlflow.db"


def test_reads_the_summary_and_the_task_count():
    assert cached_rerun.summary_statuses(STDOUT) == {"curate": "cached", "pretrain": "ran", "midtrain": "skipped"}
    assert cached_rerun.executed_tasks(STDOUT) == 2


def test_a_work_dir_is_reused_only_with_every_stage_committed(tmp_path):
    assert not cached_rerun.complete(tmp_path)
    for stage in cached_rerun.STAGES:
        (tmp_path / "store" / "smoke" / stage / "fp").mkdir(parents=True)
    assert not cached_rerun.complete(tmp_path)  # folders without a manifest: partial
    for stage in cached_rerun.STAGES:
        (tmp_path / "store" / "smoke" / stage / "fp" / "manifest.json").write_text("{}")
    assert cached_rerun.complete(tmp_path)


def test_report_ratios():
    f = cached_rerun.Figures(reruns=[8.0, 10.0, 12.0], tasks=8, task_floor=0.5, driver_floor=2.0, old_task=3.0)
    assert f.rerun == 10.0 and f.floor == 6.0
    lines = cached_rerun.report(f)
    assert "median 10.0 s (min 8.0, max 12.0, n=3); 8 KFP tasks executed" in lines[0]
    assert "0.50x of it, met" in lines[1]
    assert "re-run / floor = 1.67x" in lines[2]
    assert "= 24.0 s: 2.4x this whole re-run" in lines[3]
    assert "before: 57 s (issue 12's report): 5.7x this re-run" in lines[4]
    slow = cached_rerun.Figures(reruns=[25.0], tasks=8, task_floor=0.5, driver_floor=2.0, old_task=3.0)
    assert "NOT met" in cached_rerun.report(slow)[1]
