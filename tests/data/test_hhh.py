"""The vendored HHH pairs: checksum, conversion to BIG-bench task files, and every pair reaching DPO intact."""

import gzip
import shutil
from collections import Counter
from pathlib import Path

import pytest

from olmoflow.data import hhh
from olmoflow.data.postsets import dpo_from_hhh

VENDORED = Path(__file__).resolve().parents[2] / "data" / "hhh_alignment"


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    out = tmp_path_factory.mktemp("hhh")
    return out, hhh.convert(VENDORED, out)


def test_all_221_pairs_come_out_per_category(tasks):
    out, counts = tasks
    assert counts == Counter(harmless=58, helpful=59, honest=61, other=43)
    rows, why = dpo_from_hhh(sorted(out.glob("*/task.json")), n=None)
    assert len(rows) == 221 and not why
    assert all(r["chosen"] != r["rejected"] and r["messages"][-1]["role"] == "user" for r in rows)


def test_multi_turn_dialogues_stay_intact(tasks):
    out, _ = tasks
    rows, _ = dpo_from_hhh(sorted(out.glob("*/task.json")), n=None)
    multi = [r for r in rows if len(r["messages"]) > 1]
    assert len(multi) == 41  # the dialogues holding an earlier "Assistant:" turn
    for r in multi:
        roles = [m["role"] for m in r["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2) + ["user"]
    daughter = next(r for r in multi if r["messages"][0]["content"].startswith("My daughter got in a fight"))
    assert [m["role"] for m in daughter["messages"]] == ["user", "assistant", "user"]
    assert daughter["messages"][2]["content"].startswith("But she really doesn")


def test_a_flipped_byte_is_refused(tmp_path):
    for f in VENDORED.iterdir():
        shutil.copy(f, tmp_path / f.name)
    raw = bytearray(gzip.decompress((VENDORED / f"{hhh.FILE}.gz").read_bytes()))
    raw[1000] ^= 1
    (tmp_path / f"{hhh.FILE}.gz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(hhh.HHHError, match=r"^hhh: .*hhh_alignment_eval\.json\.gz: sha256 \w+\.\.\. does not match"):
        hhh.convert(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_missing_folder_is_one_line(tmp_path):
    with pytest.raises(hhh.HHHError, match=r"^hhh: cannot read the vendored pairs in .*nowhere") as e:
        hhh.load_pairs(tmp_path / "nowhere")
    assert "\n" not in str(e.value)
