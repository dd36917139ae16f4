"""rlvr.template plain (RL-Zero): a "Question: ...\\nAnswer:" prompt with no chat token, generation that ends with the
first line, the exact verifier reading that line, and a checkpoint that eval treats as a base model."""

from __future__ import annotations

from kit import tiny_model_config, tiny_olmo

from olmoflow.evals.gen import chat_style
from olmoflow.post.chat import ChatTemplate
from olmoflow.post.engine import BuiltinEngine, Request
from olmoflow.post.learner import greedy_accuracy
from olmoflow.post.rl_template import TEMPLATE_FILE, cut_at, mark_template, rl_template, template_of
from olmoflow.post.verifiers import score
from olmoflow.stages.rlvr import make_reward, prepare

VOCAB = 40


def test_plain_prompt_is_text_at_a_documents_start(tokenizer):
    plain = rl_template(tokenizer, "plain")
    ids = plain.encode("What is 12 plus 7?")
    assert tokenizer.decode(ids, skip_special_tokens=False) == "<|endoftext|>Question: What is 12 plus 7?\nAnswer:"
    chat = ChatTemplate(tokenizer)
    assert chat.im_start not in ids and chat.im_end not in ids and ids[0] == chat.eos
    assert plain.eos == chat.eos and plain.pad == chat.pad
    rows = prepare([{"prompt": "What is 12 plus 7?", "answer": "19", "verifier": "exact"}], plain, 64)
    assert rows[0]["ids"] == ids


def test_chat_template_is_unchanged(tokenizer):
    chat, picked = ChatTemplate(tokenizer), rl_template(tokenizer, "chat")
    assert picked.encode("hi") == chat.prompt([{"role": "user", "content": "hi"}])
    assert (picked.eos, picked.stops) == (chat.im_end, ())


def test_plain_answer_ends_with_the_first_line(tokenizer):
    plain = rl_template(tokenizer, "plain")
    assert plain.stops and all("\n" in tokenizer.decode([i]) for i in plain.stops)
    completion = tokenizer.encode(" 19.\nQuestion: What is", add_special_tokens=False).ids
    assert tokenizer.decode(cut_at(completion, set(plain.stops))) == " 19.\n"
    assert cut_at([5, 6, 7, 6], {6}) == [5, 6]


def test_engine_and_greedy_stop_at_a_stop_token():
    model = tiny_olmo(VOCAB, seed=0).eval()
    prompt = [3, 4, 5]

    def run(stop_ids=()):
        e = BuiltinEngine(tiny_model_config(VOCAB), slots=2, max_len=32, temperature=0.0, top_p=1.0, eos_id=None,
                          stop_ids=stop_ids)
        e.load_weights(model.state_dict(), version=0)
        return e.run([Request(0, prompt, 12)])[0].tokens

    free = run()
    stop = free[2]
    assert run((stop,)) == cut_at(free, {stop}) and len(run((stop,))) <= 3
    item = {"ids": prompt, "verifier": "exact"}
    lengths = []
    greedy_accuracy(model, [item], lambda it, t: float(lengths.append(len(t)) or 0), 12, eos_id=-1, batch=1,
                    stop_ids=(stop,))
    assert lengths == [len(cut_at(free, {stop}))]


def test_exact_verifier_reads_the_first_line_under_plain():
    assert score("exact", " 19.\nQuestion: What is 2 plus 2?", "19", "plain") == 1.0
    assert score("exact", " Yes", "yes", "plain") == 1.0 and score("exact", "yes", "yes") == 0.0  # chat: as before
    assert score("exact", " The answer is 19.", "19", "plain") == 1.0
    assert score("exact", " 18\n19", "19", "plain") == 0.0  # only the first line is the answer
    for text in (" The answer is 19.", "The answer is 18.", "The answer is  19 ."):  # scored as under chat
        assert score("exact", text, "19", "plain") == score("exact", text, "19")


def test_plain_reward_decodes_and_scores_the_first_line(tokenizer):
    reward = make_reward(tokenizer, "plain")
    row = {"verifier": "exact", "answer": "19"}
    assert reward(row, tokenizer.encode(" 19.\n", add_special_tokens=False).ids) == 1.0
    assert make_reward(tokenizer)(row, tokenizer.encode(" 19.\n", add_special_tokens=False).ids) == 0.0


def test_eval_prompts_a_plain_template_rlvr_checkpoint_as_a_base_model(tmp_path):
    chat_ckpt, plain_ckpt = tmp_path / "chat", tmp_path / "plain"
    for d, name in ((chat_ckpt, "chat"), (plain_ckpt, "plain")):
        (d / "model").mkdir(parents=True)
        mark_template(d, name)
    assert not (chat_ckpt / TEMPLATE_FILE).exists() and template_of(plain_ckpt) == "plain"
    assert chat_style("auto", "rlvr", chat_ckpt) == (True, "auto: the checkpoint was made by stage rlvr")
    chat, reason = chat_style("auto", "rlvr", plain_ckpt)
    assert not chat and "rlvr.template=plain" in reason and "base model" in reason
    assert chat_style("chat", "rlvr", plain_ckpt) == (True, "eval.chat_format=chat")  # a setting still wins
