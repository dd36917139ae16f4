"""Delta-learning pairs: the rejected reply is a wrong one in the answer format where there is one."""

from __future__ import annotations

from olmoflow.post import delta


def _pairs(monkeypatch, strong: list[str], weak: list[str]):
    def fake(model, template, prompts, k, max_new_tokens, temperature, seed):
        return [strong if model == "strong" else weak for _ in prompts]

    monkeypatch.setattr(delta, "_samples", fake)
    row = {"prompt": "Which is smallest: 4, 2, 7?", "answer": "2", "verifier": "exact", "format": "plain"}
    return delta.delta_pairs("strong", "weak", None, [row], len(strong), 16, 1.0, 0)


def test_rejected_is_a_wrong_answer_in_the_format_when_one_exists(monkeypatch) -> None:
    # the weaker model never writes the format; the stronger one is sometimes wrong in it
    pairs, stats = _pairs(monkeypatch, ["The answer is 2.", "The answer is 4."], ["4 2 7 4", "seven"])
    assert pairs[0]["chosen"] == "The answer is 2." and pairs[0]["rejected"] == "The answer is 4."
    assert stats["rejected_in_format"] == 1
    # the weaker model's wrong in-format reply comes first
    pairs, _ = _pairs(monkeypatch, ["The answer is 2.", "The answer is 4."], ["nope", "The answer is 7."])
    assert pairs[0]["rejected"] == "The answer is 7."


def test_without_a_wrong_reply_in_format_the_weaker_models_wrong_one_is_rejected(monkeypatch) -> None:
    pairs, stats = _pairs(monkeypatch, ["The answer is 2.", "The answer is 2."], ["seven", "The answer is 2."])
    assert pairs[0]["rejected"] == "seven" and stats["rejected_in_format"] == 0
