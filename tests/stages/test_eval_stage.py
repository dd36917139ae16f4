"""The eval stage end to end on a tiny exported Olmo3: report files that hold the numbers, bits-per-byte equal to
transformers' Olmo3ForCausalLM on the same checkpoint, chat-format choice, resume, and clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from kit import input_from_dir, make_test_context, tiny_olmo
from tokenizers import Tokenizer

from olmoflow.config import from_dict
from olmoflow.contract.context import InputArtifact
from olmoflow.data.tokenizer import train_bpe
from olmoflow.model.checkpoint import save_checkpoint
from olmoflow.stages import eval as eval_stage

ROOT = Path(__file__).resolve().parents[2]
WEB = ["Plants need sunlight and water to grow.", "A magnet attracts iron nails.",
       "Ice melts into water when it is warm; café crème is warmer."]
CODE = ["def add(a, b):\n    return a + b\n", "for i in range(10):\n    print(i * i)\n" * 12]  # the second > seq_len
ARC = [{"id": f"arc-{i}", "question": q, "choices": c, "answer": a} for i, (q, c, a) in enumerate([
    ("Which gas do plants take in from the air?", ["carbon dioxide", "iron", "steam", "sand"], 0),
    ("What attracts iron nails?", ["water", "a magnet"], 1),
    ("What melts into water when it is warm?", ["a fox", "ice", "a dog"], 1),
    ("What do plants need to grow?", ["sunlight and water", "iron nails", "steam", "noise"], 0),
    ("What is hot steam made from?", ["water", "sand"], 0),
    ("Which animal is quick and brown in the sentence?", ["the fox", "the dog", "the cat"], 0)])]
ARITH = [{"id": f"ar-{i}", "question": f"What is {a} plus {b}?", "answer": str(a + b)}
         for i, (a, b) in enumerate([(12, 7), (3, 4), (20, 22), (5, 5)])]


def _tokenizer(path: Path) -> Tokenizer:
    # split_digits=False: the tokenizer these tests were written against (curate's default splits numbers).
    tok = train_bpe(WEB + CODE + [json.dumps(x) for x in ARC + ARITH], 320, split_digits=False)
    tok.save(str(path))
    return tok


def _jsonl(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def payloads(tmp_path):
    data = tmp_path / "dataset"
    data.mkdir()
    tok = _tokenizer(data / "tokenizer.json")
    _jsonl(data / "val" / "web.jsonl", [{"text": t} for t in WEB])
    _jsonl(data / "val" / "code.jsonl", [{"text": t} for t in CODE])
    _jsonl(data / "eval" / "arc_easy.jsonl", ARC)
    _jsonl(data / "eval" / "arithmetic.jsonl", ARITH)
    model = tiny_olmo(320, max_seq_len=256)
    save_checkpoint(tmp_path / "ckpt", model, data / "tokenizer.json")
    return data, tmp_path / "ckpt", tok


def _cfg(**over):
    smoke = {"eval": yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())["eval"]}
    smoke["eval"].update({"base_tasks": ["arc_easy", "arithmetic"], "chat_tasks": ["arithmetic"], "limit": 8,
                          **over})
    return from_dict(smoke)


def _ctx(root, data, ckpt, cfg, stage="pretrain"):
    ckpt_in = InputArtifact(uri=str(ckpt), kind="checkpoint", fingerprint="test", manifest={"stage": stage},
                            path=ckpt)
    ctx = make_test_context("eval", cfg, root, {"dataset": input_from_dir(data, "dataset"), "checkpoint": ckpt_in})
    ctx.logged = []
    ctx.artifact_sink = lambda p, sub: ctx.logged.append((p, sub))
    return ctx


def test_eval_stage_writes_a_report_that_holds_the_numbers(tmp_path, payloads):
    data, ckpt, tok = payloads
    ctx = _ctx(tmp_path, data, ckpt, _cfg())
    metrics = eval_stage.run(ctx)
    res = json.loads((ctx.out / "results.json").read_text())
    assert res["metrics"] == pytest.approx(metrics)
    assert res["headline"] == {"metric": "val_bpb", "value": pytest.approx(metrics["val_bpb"])}

    # held-out counts from the documents themselves, and bpb = nats / (ln 2 * bytes), pooled over domains
    lm = res["heldout"]
    for name, docs in (("web", WEB), ("code", CODE)):
        d = lm["domains"][name]
        assert d["bytes"] == sum(len(t.encode("utf-8")) for t in docs)
        assert d["tokens"] == sum(len(tok.encode(t, add_special_tokens=False).ids) for t in docs)
        assert d["bpb"] == pytest.approx(d["nats"] / (math.log(2) * d["bytes"]))
    nats = lm["domains"]["web"]["nats"] + lm["domains"]["code"]["nats"]
    n_bytes = lm["domains"]["web"]["bytes"] + lm["domains"]["code"]["bytes"]
    assert metrics["val_bpb"] == pytest.approx(nats / (math.log(2) * n_bytes))
    assert lm["domains"]["code"]["tokens"] > 128  # the long document went through the sliding window

    # the outside oracle: transformers on the exported weights, one forward per (short) web document
    transformers = pytest.importorskip("transformers")
    hf = transformers.Olmo3ForCausalLM.from_pretrained(ckpt / "model", torch_dtype=torch.float32).eval()
    eos = tok.token_to_id("<|endoftext|>")
    hf_nats = 0.0
    for t in WEB:
        ids = torch.tensor([[eos] + tok.encode(t, add_special_tokens=False).ids])
        with torch.no_grad():
            hf_nats += float(hf(input_ids=ids, labels=ids).loss) * (ids.shape[1] - 1)
    assert lm["domains"]["web"]["nats"] == pytest.approx(hf_nats, rel=1e-4)

    # tasks: counts, chance, and per-item predictions that add up to the score
    assert res["suite"] == "base" and all(t["status"] == "ok" for t in res["tasks"].values())
    arc = res["tasks"]["arc_easy"]
    assert (arc["n"], arc["primary"]) == (6, "acc_per_char")
    assert arc["chance"] == pytest.approx(sum(1 / len(x["choices"]) for x in ARC) / 6)
    preds = [json.loads(line) for line in (ctx.out / "predictions" / "arc_easy.jsonl").read_text().splitlines()]
    assert [p["id"] for p in preds] == [x["id"] for x in ARC]
    assert metrics["arc_easy/acc_per_char"] == pytest.approx(sum(p["acc_per_char"] for p in preds) / 6)
    assert res["tasks"]["arithmetic"]["n"] == 4 and res["tasks"]["arithmetic"]["prompt_format"] == "base"
    assert res["chat_format"]["chat"] is False

    # the report a person reads shows the same numbers; the plots exist and went to the tracker
    md = (ctx.out / "report.md").read_text()
    assert f"**val_bpb = {metrics['val_bpb']:.4f}**" in md
    assert (f"| arc_easy | **acc_per_char** (primary) | {metrics['arc_easy/acc_per_char']:.4f} | 6 | "
            f"{arc['chance']:.4f} |") in md
    assert f"| code | 2 | {lm['domains']['code']['tokens']} |" in md
    assert "slides on with 32 tokens of carried context" in md
    assert "Sample generations were not traced: no trace index was given to the eval stage" in md
    assert res["trace"]["status"] == "no index" and not any(k.startswith("trace/") for k in metrics)
    pngs = sorted(p.name for p, sub in ctx.logged if sub == "plots")
    assert pngs == ["task_scores.png", "val_bpb.png"]
    assert [(p.name, sub) for p, sub in ctx.logged if sub != "plots"] == [("traces.json", "trace")]
    for name in pngs:
        assert (ctx.out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


COPIED = "A magnet attracts iron nails while the ice melts into water."
"""Training text (an SFT answer) that the fake model below writes back word for word."""


def test_sample_generations_are_traced_against_the_index(tmp_path, payloads, monkeypatch):
    from olmoflow.trace.build import build_index

    data, ckpt, tok = payloads
    _jsonl(data / "post" / "sft.jsonl", [{"messages": [{"role": "user", "content": "Tell me about magnets."},
                                                      {"role": "assistant", "content": COPIED}]}])
    build_index(data, tmp_path / "index", ["post"], cpus=1)
    copied = tok.encode(COPIED, add_special_tokens=False).ids
    prompts = []

    def fake_generate(model, batch, max_new_tokens, temperature, eos_id):
        prompts.extend(batch)
        return [copied[:max_new_tokens] + [eos_id]] * len(batch), [[0.0] * (len(copied) + 1)] * len(batch)

    monkeypatch.setattr(eval_stage, "generate", fake_generate)
    ctx = _ctx(tmp_path, data, ckpt, _cfg(base_tasks=["arc_easy"], trace_samples=3, trace_prompt_tokens=4))
    ctx.inputs["index"] = input_from_dir(tmp_path / "index", "index")
    metrics = eval_stage.run(ctx)

    # three prompts: the openings of held-out documents, the domains in turn, after <|endoftext|> (a base model)
    eos = tok.token_to_id("<|endoftext|>")
    assert [p[0] for p in prompts] == [eos] * 3 and all(len(p) == 5 for p in prompts)
    traces = json.loads((ctx.out / "traces.json").read_text())
    assert traces["status"] == "traced" and traces["index"]["uri"] == str(tmp_path / "index")
    [entry] = traces["checkpoints"]
    assert (entry["stage"], entry["uri"], entry["chat"]) == ("pretrain", str(ckpt), False)
    assert [s["id"] for s in entry["samples"]] == ["val/code#0", "val/web#0", "val/code#1"]
    assert entry["samples"][1]["prompt"] == WEB[0][:len(entry["samples"][1]["prompt"])]
    for s in entry["samples"]:
        assert s["generated"] == COPIED
        [span] = s["spans"]
        assert span["text"] == COPIED.rstrip(".") or span["text"] == COPIED
        assert span["docs"][0]["source"] == "post/sft" and span["docs"][0]["part"] == "post"
    assert metrics["trace/spans"] == 3 and metrics["trace/covered"] > 0.9
    assert json.loads((ctx.out / "results.json").read_text())["trace"] == traces

    md = (ctx.out / "report.md").read_text()
    section = md[md.index("## Where the model saw it (OlmoTrace)"):]
    assert f"Index: `{tmp_path / 'index'}`" in section and "3 samples (base prompts): 3 spans" in section
    assert f"**{span['text']}**" in section and "post/sft / 0.1 (post)" in section


def test_an_index_of_another_tokenizer_is_noted_not_fatal(tmp_path, payloads):
    from olmoflow.trace.build import build_index

    data, ckpt, _ = payloads
    other = tmp_path / "other"
    other.mkdir()
    train_bpe(["a different corpus with different words entirely"] * 9, 300).save(str(other / "tokenizer.json"))
    _jsonl(other / "post" / "sft.jsonl", [{"messages": [{"role": "user", "content": "hi"},
                                                       {"role": "assistant", "content": "different words"}]}])
    build_index(other, tmp_path / "index", ["post"], cpus=1)
    ctx = _ctx(tmp_path, data, ckpt, _cfg(base_tasks=["arc_easy"]))
    ctx.inputs["index"] = input_from_dir(tmp_path / "index", "index")
    eval_stage.run(ctx)
    res = json.loads((ctx.out / "results.json").read_text())
    assert res["trace"]["status"] == "refused" and "uses tokenizer" in res["trace"]["note"]
    assert "Sample generations were not traced: trace: checkpoint" in (ctx.out / "report.md").read_text()


def test_checkpoints_from_post_training_get_chat_prompts(tmp_path, payloads):
    data, ckpt, _ = payloads
    ctx = _ctx(tmp_path, data, ckpt, _cfg(), stage="sft")
    eval_stage.run(ctx)
    res = json.loads((ctx.out / "results.json").read_text())
    assert res["chat_format"] == {"chat": True, "reason": "auto: the checkpoint was made by stage sft"}
    assert res["tasks"]["arithmetic"]["prompt_format"] == "chat"
    assert list(res["tasks"]) == ["arithmetic"] and res["suite"] == "chat"  # the chat suite


def test_a_failing_task_is_reported_and_the_others_kept(tmp_path, payloads):
    data, ckpt, _ = payloads
    _jsonl(data / "eval" / "gsm8k.jsonl", [{"id": "g1", "question": "What is 2 + 2?"}])  # no answer
    ctx = _ctx(tmp_path, data, ckpt, _cfg(base_tasks=["gsm8k", "arc_easy", "mmlu"]))
    metrics = eval_stage.run(ctx)
    res = json.loads((ctx.out / "results.json").read_text())
    assert res["tasks"]["gsm8k"]["status"] == "failed" and "'answer'" in res["tasks"]["gsm8k"]["error"]
    assert res["tasks"]["mmlu"]["status"] == "failed" and "mmlu.jsonl does not exist" in res["tasks"]["mmlu"]["error"]
    assert res["tasks"]["arc_easy"]["status"] == "ok" and "arc_easy/acc_per_char" in metrics
    assert metrics["tasks_failed"] == 2
    md = (ctx.out / "report.md").read_text()
    assert "| gsm8k | **failed**: ValueError: task gsm8k: item 'g1' needs key 'answer'" in md


def test_contaminated_items_are_counted_and_the_clean_score_given(tmp_path, payloads):
    data, ckpt, _ = payloads
    (data / "eval" / "contamination.json").write_text(json.dumps({"arc_easy": {
        "items": 6, "contaminated": 2, "share": 2 / 6, "ids": ["arc-0", "arc-1"], "ngram": 13}}))
    ctx = _ctx(tmp_path, data, ckpt, _cfg(base_tasks=["arc_easy"], limit=4))
    eval_stage.run(ctx)
    res = json.loads((ctx.out / "results.json").read_text())
    c = res["tasks"]["arc_easy"]["contamination"]
    assert (c["items"], c["contaminated"], c["flagged"]) == (4, 2, True) and c["share"] == 0.5
    preds = [json.loads(x) for x in (ctx.out / "predictions" / "arc_easy.jsonl").read_text().splitlines()]
    clean = [p["acc_per_char"] for p in preds if p["id"] in ("arc-2", "arc-3")]
    assert c["clean"] == {"n": 2, "acc_per_char": pytest.approx(sum(clean) / 2)}
    md = (ctx.out / "report.md").read_text()
    assert "| arc_easy ⚠ | 4 | 2 | 50.0% |" in md and "⚠ contaminated items" in md


def test_a_killed_run_resumes_from_its_finished_parts(tmp_path, payloads, monkeypatch):
    data, ckpt, _ = payloads
    first = eval_stage.run(_ctx(tmp_path, data, ckpt, _cfg()))

    def fail(*args, **kwargs):
        raise AssertionError("recomputed a finished part")

    monkeypatch.setattr(eval_stage, "score_domain", fail)
    monkeypatch.setattr(eval_stage.tasks, "score", fail)
    assert eval_stage.run(_ctx(tmp_path, data, ckpt, _cfg())) == pytest.approx(first)


def test_a_dataset_without_held_out_text_is_a_clear_error(tmp_path, payloads):
    data, ckpt, _ = payloads
    for f in (data / "val").iterdir():
        f.unlink()
    with pytest.raises(FileNotFoundError, match=r"eval: dataset .*dataset: no val/\*.jsonl held-out files"):
        eval_stage.run(_ctx(tmp_path, data, ckpt, _cfg()))
