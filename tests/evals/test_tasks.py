"""The task catalog, item files and the eval config section: the catalog says what mc_tasks.py and gen_tasks.py
define, and bad input is a clear one-line error that names the task, file, line, key or metric."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from olmoflow.config import ConfigError, from_dict
from olmoflow.evals import gen_tasks, mc_tasks, tasks
from olmoflow.evals.catalog import CATALOG, parse
from olmoflow.evals.config import BASE_SUITE, CHAT_SUITE, EvalConfig

ROOT = Path(__file__).resolve().parents[2]


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_catalog_is_what_the_scorers_define():
    assert set(CATALOG) == set(mc_tasks.MC_TASKS) | set(gen_tasks.GEN_TASKS)
    for name, t in mc_tasks.MC_TASKS.items():
        e = CATALOG[name]
        assert e.family == "mc" and tuple(e.metrics) == t.formats
        assert all(e.metrics[f] == t.metrics(f) and e.primary[f] == t.primary(f) for f in t.formats), name
    for name, t in gen_tasks.GEN_TASKS.items():
        e = CATALOG[name]
        assert (e.family, e.metrics, e.primary) == (t.family, {"": t.metrics}, {"": t.primary}), name


def test_suites_cover_every_task_and_parse():
    assert {parse(t).task for t in BASE_SUITE + CHAT_SUITE} == set(CATALOG)
    assert parse("arc_challenge:mc").metrics == ("acc_raw", "acc_per_char", "bits_per_byte_corr")
    assert parse("arc_challenge").fmt == "rc" and parse("gsm8k").key == "gsm8k"
    assert EvalConfig().base_tasks == BASE_SUITE


def test_items_and_shots_come_from_their_own_files(tmp_path):
    _write(tmp_path / "eval" / "arc_easy.jsonl", [{"id": f"t{i}", "question": "q", "choices": ["a", "b"],
                                                    "answer": 0} for i in range(5)])
    _write(tmp_path / "eval" / "arc_easy.train.jsonl", [{"id": f"s{i}", "question": "q", "choices": ["a", "b"],
                                                          "answer": 1} for i in range(9)])
    items, shots, note = tasks.load(tmp_path, parse("arc_easy"), limit=3, num_shots=None)
    assert [i["id"] for i in items] == ["t0", "t1", "t2"]
    assert [s["id"] for s in shots] == [f"s{i}" for i in range(5)] and note == "5-shot from its train split"
    # no train split: no shots, and the note says why
    _write(tmp_path / "eval" / "humaneval.jsonl", [{"id": "h", "prompt": "p", "test": "t", "solution": "s"}])
    _, shots, note = tasks.load(tmp_path, parse("humaneval"), limit=0, num_shots=2)
    assert shots == [] and "no train split" in note


@pytest.mark.parametrize("row,message", [
    ("{not json", r"eval task arc_easy: .*arc_easy.jsonl:2: not valid JSON"),
    ("[1, 2]", r"eval task arc_easy: .*arc_easy.jsonl:2: expected a JSON object"),
])
def test_bad_lines_name_task_file_and_line(tmp_path, row, message):
    _write(tmp_path / "eval" / "arc_easy.jsonl", [{"id": "ok", "question": "q", "choices": ["a", "b"],
                                                    "answer": 0}, row])
    with pytest.raises(ValueError, match=message):
        tasks.load(tmp_path, parse("arc_easy"), 0, 0)


def test_a_missing_task_file_says_who_writes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"eval task arc_easy: .*arc_easy.jsonl does not exist"):
        tasks.load(tmp_path, parse("arc_easy"), 0, 0)


def test_config_errors_name_the_task_or_metric():
    with pytest.raises(ConfigError, match=r"eval: base_tasks.0: unknown eval task 'hellaswagg'"):
        from_dict({"eval": {"base_tasks": ["hellaswagg"]}})
    with pytest.raises(ConfigError, match=r"eval: chat_tasks.0: eval task mmlu: unknown format 'xx'"):
        from_dict({"eval": {"chat_tasks": ["mmlu:xx"]}})
    with pytest.raises(ConfigError, match=r"eval task gsm8k: unknown metric 'f1'"):
        from_dict({"eval": {"metrics": {"gsm8k": "f1"}}})
    with pytest.raises(ConfigError, match=r"eval: bpb_overlap \(64\) must be shorter than seq_len \(64\)"):
        from_dict({"eval": {"seq_len": 64, "bpb_overlap": 64}})
    with pytest.raises(ConfigError, match=r"eval.chat_format: .*'auto', 'base' or 'chat'"):
        from_dict({"eval": {"chat_format": "instruct"}})


@pytest.mark.parametrize("preset", ["smoke", "tiny"])
def test_presets_have_valid_eval_sections(preset):
    data = {"eval": yaml.safe_load((ROOT / "configs" / f"{preset}.yaml").read_text())["eval"]}
    cfg = from_dict(data).eval
    assert cfg.base_tasks == BASE_SUITE and cfg.limit > 0 and cfg.bpb_max_bytes > 0 and cfg.bpb_overlap < cfg.seq_len
