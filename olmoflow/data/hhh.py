"""BIG-bench's hhh_alignment preference pairs from the copy vendored in `data/hhh_alignment/`.

PyPI's `bigbench` sdist that used to carry the task can no longer be downloaded, so the repository ships the 221
pairs as re-published (Apache-2.0) by prometheus-eval: each pair wraps one dialogue and one reply in a grading
prompt. `convert` checks the file against its SHA256SUMS, cuts dialogue and reply out of the prompts, and writes
BIG-bench's own layout, `{category}/task.json` with `{"examples": [{"input", "target_scores"}]}`, which is what
`curate.post.hhh` reads (olmoflow/data/postsets.py), so the pairs come out exactly as from the original task files.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter
from pathlib import Path

FILE = "hhh_alignment_eval.json"
DIALOGUE = "###The instruction to evaluate:\n"
REPLY = "\n\n###Response to evaluate:\n"
END = "\n\n###Score Rubrics:"


class HHHError(ValueError):
    """The vendored file is missing, altered or not in the expected shape; the message names the file."""


def _cut(prompt: str, where: str) -> tuple[str, str]:
    """(dialogue, reply) of one grading prompt."""
    if not (prompt.count(DIALOGUE) == prompt.count(REPLY) == prompt.count(END) == 1):
        raise HHHError(f"{where}: not a grading prompt with one dialogue and one reply")
    dialogue, rest = prompt.split(DIALOGUE, 1)[1].split(REPLY, 1)
    return dialogue, rest.split(END, 1)[0]


def load_pairs(folder: Path) -> list[dict]:
    """[{category, dialogue, chosen, rejected}] from `folder/FILE(.gz)`, after checking its sha256."""
    gz, plain = folder / f"{FILE}.gz", folder / FILE
    path = gz if gz.exists() else plain
    try:
        raw = gzip.decompress(gz.read_bytes()) if path == gz else plain.read_bytes()
        sums = dict(line.split()[::-1] for line in (folder / "SHA256SUMS").read_text().splitlines() if line.strip())
    except OSError as e:
        raise HHHError(f"hhh: cannot read the vendored pairs in {folder} ({e.strerror or e}: {e.filename})") from None
    digest = hashlib.sha256(raw).hexdigest()
    if sums.get(FILE) != digest:
        raise HHHError(f"hhh: {path}: sha256 {digest[:16]}... does not match SHA256SUMS "
                       f"({(sums.get(FILE) or 'no entry')[:16]}...)")
    pairs = []
    for i, item in enumerate(json.loads(raw)):
        where = f"hhh: {path} item {i}"
        dialogue, chosen = _cut(item["chosen_instruction"], where)
        other, rejected = _cut(item["rejected_instruction"], where)
        if other != dialogue:
            raise HHHError(f"{where}: chosen and rejected prompts hold different dialogues")
        pairs.append({"category": item["source"], "dialogue": dialogue, "chosen": chosen, "rejected": rejected})
    return pairs


def convert(folder: Path, out: Path) -> Counter:
    """Write `out/{category}/task.json` (BIG-bench's format: chosen scores 1, rejected 0); returns pairs per
    category."""
    by_category: dict[str, list[dict]] = {}
    for p in load_pairs(folder):
        by_category.setdefault(p["category"], []).append(
            {"input": p["dialogue"], "target_scores": {p["chosen"]: 1, p["rejected"]: 0}})
    for category, examples in sorted(by_category.items()):
        (out / category).mkdir(parents=True, exist_ok=True)
        task = {"name": f"hhh_alignment:{category}", "examples": examples}
        (out / category / "task.json").write_text(json.dumps(task, ensure_ascii=False, indent=1), encoding="utf-8")
    return Counter({c: len(e) for c, e in by_category.items()})
