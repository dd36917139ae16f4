"""bench/post_logprobs.py at a toy size: both variants run in their own process, agree, and the ratios print."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "post_logprobs.py"


def test_both_variants_run_agree_and_print_ratios():
    done = subprocess.run([sys.executable, str(SCRIPT), "--tokens", "300", "--d-model", "32", "--vocab", "1000",
                           "--steps", "1", "--threads", "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert re.search(r"olmoflow: +\d+ ms per forward \+ backward, peak memory", done.stdout)
    assert re.search(r"log_softmax: +\d+ ms per forward \+ backward", done.stdout)
    agree = re.search(r"sums agree to ([0-9.e+-]+)", done.stdout)
    assert agree and float(agree.group(1)) < 1e-5, done.stdout
    assert "x faster" in done.stdout and "x less memory" in done.stdout
