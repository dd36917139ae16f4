"""Prompts of the generative tasks, in both styles.

base  OLMES's layouts: few-shot demonstrations (the caller's shots, drawn from eval/{task}.train.jsonl), then the
      item with an open answer; the continuation is cut at the task's stop sequences.
        gsm8k             "Question: {q}\\nAnswer: {CoT} So the answer is {N}.\\n\\n" ... "Question: {q}\\nAnswer:"
                          (the CoT: the shot's "solution", calculator annotations dropped, "#### N" restated)
        minerva_math_500  Minerva's "Problem:\\n{q}\\n\\nSolution: {solution}\\nFinal Answer: The final answer is
                          ${A}$. I hope it is correct.\\n\\n" ... "Problem:\\n{q}\\n\\nSolution:"
        squad             description, "Title: {title}\\nBackground: {context}\\nQuestion: {q}\\nAnswer:"
        drop              description, "Passage: {context}\\nQuestion: {q}\\nAnswer:"
        coqa              description, "Passage: {context}\\n\\n[Preceding questions:\\n\\n{Question/Answer
                          turns}]Final question:\\n\\nQuestion: {q}\\nAnswer:"
        humaneval         the signature and docstring, continued (Codex's layout); shots as prompt + solution
        mbpp              "{text}\\n{first test}\\n```python\\n", continued up to the closing fence
        ifbench           the prompt itself
        arithmetic        "Question: {q}\\nAnswer:" (gen.base_prompt)
chat  Olmo 3's chat template (olmoflow.post.chat): each shot a user turn (the base layout's item block without the
      answer cue) and an assistant turn (its demonstration), then the item as a user turn; math, GSM8K and code add
      one sentence saying how to state the answer.
"""

from __future__ import annotations

from typing import Any

from olmoflow.evals import answers, gen

SQUAD_DESC = ("The following are reading comprehension questions, where the answer to each question is a segment "
              "of text from the corresponding background text.\n\n")
DROP_DESC = ("The following are reading comprehension questions, where the answer to each question is either a "
             "segment of text from the corresponding passage, a number, or a date (containing any of the date, "
             "month, and/or year components). Some questions may require you to pull together information pieces "
             "from the passage and reason over them.\n\n")
COQA_DESC = ("Below is a passage followed by a conversation so far, where each turn in the conversation contains a "
             "question and an answer. Please answer the final question by referring to the passage and the previous "
             "questions.\n\n")
DESCRIPTIONS = {"squad": SQUAD_DESC, "drop": DROP_DESC, "coqa": COQA_DESC}
CHAT_HINTS = {
    "gsm8k": '\n\nSolve it step by step, then end with "So the answer is N." where N is the number.',
    "minerva_math_500": ('\n\nSolve it step by step, then end with "Final Answer: The final answer is $X$. '
                         'I hope it is correct." where X is the answer in LaTeX.'),
    "humaneval": "\n\nReply with the whole function in a ```python code block.",
    "mbpp": "\n\nReply with the code in a ```python code block.",
}


def first_test(item: dict[str, Any]) -> str:
    """MBPP's first assert, shown so the model knows the function's name and signature."""
    return next((ln.strip() for ln in item["test"].splitlines() if ln.strip().startswith("assert")), "")


def _block(task: str, item: dict[str, Any]) -> str:
    """The item as the base layout shows it, up to (not including) the answer cue."""
    q = item.get("question", "")
    if task == "minerva_math_500":
        return f"Problem:\n{q}"
    if task == "squad":
        title = f"Title: {item['title']}\n" if item.get("title") else ""
        return f"{title}Background: {item.get('context', '')}\nQuestion: {q}"
    if task == "drop":
        return f"Passage: {item.get('context', '')}\nQuestion: {q}"
    if task == "coqa":
        turns = "".join(f"Question: {hq}\nAnswer: {ha}\n\n" for hq, ha in item.get("history") or [])
        before = f"Preceding questions:\n\n{turns}" if turns else ""
        return f"Passage: {item.get('context', '')}\n\n{before}Final question:\n\nQuestion: {q}"
    if task == "humaneval":
        return item["prompt"]
    if task == "mbpp":
        return f"{item['prompt']}\n{first_test(item)}"
    if task == "ifbench":
        return item["prompt"]
    return f"Question: {q}"


def _cue(task: str) -> str:
    return {"minerva_math_500": "\n\nSolution:", "humaneval": "", "mbpp": "\n```python\n", "ifbench": ""}.get(
        task, "\nAnswer:")


def demonstration(task: str, shot: dict[str, Any]) -> str:
    """What the model should write for a shot."""
    if task == "gsm8k":
        return answers.gsm8k_demo(shot.get("solution") or f"#### {shot['answer']}")
    if task == "minerva_math_500":
        # blank lines dropped: "\n\n" is a stop sequence, a demonstration must not teach the model to write one
        work = "\n".join(ln for ln in (shot.get("solution") or "").split("\n") if ln.strip())
        return f"{work}\nFinal Answer: The final answer is ${answers.math_gold(shot)}$. I hope it is correct."
    if task in ("humaneval", "mbpp"):
        return shot["solution"].replace("\r\n", "\n")  # MBPP's code has Windows line ends
    return str(shot["answer"])


def base_prompt(task: str, item: dict[str, Any], shots: list[dict[str, Any]]) -> str:
    if task == "arithmetic":
        return gen.base_prompt(item["question"], shots)
    if task == "humaneval":
        demos = "".join(f"{s['prompt']}{demonstration(task, s).rstrip()}\n\n\n" for s in shots)
        return demos + item["prompt"]
    if task == "mbpp":
        demos = "".join(f"{_block(task, s)}\n```python\n{demonstration(task, s).strip()}\n```\n\n" for s in shots)
        return demos + _block(task, item) + _cue(task)
    demos = "".join(f"{_block(task, s)}{_cue(task)} {demonstration(task, s)}\n\n" for s in shots)
    return DESCRIPTIONS.get(task, "") + demos + _block(task, item) + _cue(task)


def chat_messages(task: str, item: dict[str, Any], shots: list[dict[str, Any]]) -> list[dict[str, str]]:
    if task == "arithmetic":
        return gen.chat_messages(item["question"], shots)
    hint, desc = CHAT_HINTS.get(task, ""), DESCRIPTIONS.get(task, "")
    turns = []
    for s in shots:
        reply = demonstration(task, s)
        if task in ("humaneval", "mbpp"):
            reply = f"```python\n{(s['prompt'] if task == 'humaneval' else '')}{reply.strip()}\n```"
        turns += [{"role": "user", "content": desc + _chat_block(task, s) + hint},
                  {"role": "assistant", "content": reply}]
    return turns + [{"role": "user", "content": desc + _chat_block(task, item) + hint}]


def _chat_block(task: str, item: dict[str, Any]) -> str:
    if task == "humaneval":
        return f"Complete the following Python function.\n\n```python\n{item['prompt']}```"
    if task == "mbpp":
        return f"{item['prompt']}\nYour code should pass this test:\n{first_test(item)}"
    return _block(task, item)
