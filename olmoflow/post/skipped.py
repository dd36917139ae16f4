"""Bad rows in post-training data are skipped, counted and said, never a crash: a conversation without an assistant
turn, a preference pair whose chosen reply equals its rejected one, a prompt or reply that does not fit the context.
Each stage collects the reasons in one Counter while it encodes its rows, then logs one line and reports
`skipped/{reason}` in its metrics (a program that never returns is the sandbox's: it scores 0, post/sandbox.py)."""

from __future__ import annotations

import logging
from collections import Counter

REASONS = {
    "no_assistant_turn": "without an assistant turn",
    "past_seq_len": "with no trained token within {seq_len}",
    "identical_pair": "whose chosen reply equals the rejected one",
    "prompt_too_long": "longer than {max_prompt_len}",
}


def report(skipped: Counter, what: str, stage: str, log: logging.Logger, **limits: str) -> dict[str, float]:
    """One log line naming each reason and its count (nothing when none), and the metrics {skipped/reason: n}."""
    if not skipped:
        return {}
    parts = ", ".join(f"{n} {REASONS[r].format(**limits)}" for r, n in sorted(skipped.items()))
    log.warning("%s: skipped %d %s: %s", stage, sum(skipped.values()), what, parts)
    return {f"skipped/{r}": float(n) for r, n in sorted(skipped.items())}
