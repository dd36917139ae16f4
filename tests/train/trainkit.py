"""A tiny, learnable training setup shared by the trainer tests and the SIGKILL child process.

Documents come from a first-order Markov chain (next = 5·t + 3 mod V with probability 0.8, else uniform), so a
2-layer model learns it in tens of steps: the loss must fall from ln V toward the chain's entropy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from kit import make_test_context

from olmoflow.config import from_dict
from olmoflow.contract.context import StageContext
from olmoflow.model import Olmo3
from olmoflow.registry import stage as stage_entry
from olmoflow.train.loader import TokenLoader
from olmoflow.train.loop import Trainer
from olmoflow.train.packing import Docs
from olmoflow.train.resume import Resumer

VOCAB = 128
EOS = 1
MODEL = {"d_model": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "head_dim": 8, "mlp_hidden": 64,
         "vocab_size": VOCAB, "max_seq_len": 64, "sliding_window": 8}
TRAIN = {"steps": 12, "seq_len": 16, "batch_tokens": 64, "micro_batch": 2, "lr": 3e-3, "warmup_steps": 2,
         "checkpoint_every": 4, "log_every": 1, "skip_window": 10, "seed": 0}


def markov_docs(name: str, n_docs: int, seed: int) -> Docs:
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n_docs):
        t = int(rng.integers(2, VOCAB))
        doc = [t]
        for _ in range(int(rng.integers(8, 60))):
            t = (5 * t + 3) % VOCAB if rng.random() < 0.8 else int(rng.integers(2, VOCAB))
            doc.append(max(t, 2))
        docs.append(np.array(doc + [EOS], dtype=np.uint32))
    return Docs.from_list(name, docs)


def flow_config(stage_key: str = "pretrain", **train):
    # curate.tokenizer.path: these runs bring their own token ids, so no tokenizer vocabulary is checked.
    sections = {key: dict(TRAIN) for key in ("pretrain", "midtrain", "long_context")}
    sections[stage_key].update(train)
    return from_dict({"model": MODEL, **sections, "curate": {"tokenizer": {"path": "tokens-made-by-the-test"}}})


def make_trainer(root: Path, stage: str = "pretrain", data_seed: int = 0, **train) -> tuple[StageContext, Trainer]:
    """A fresh model, loader and trainer over `root`; the work dir (in-stage checkpoints) is root/{stage}.work."""
    key = stage_entry(stage).section
    cfg = flow_config(key, **train)
    tcfg = getattr(cfg, key)
    ctx = make_test_context(stage, cfg, root)
    torch.manual_seed(tcfg.seed)
    model = Olmo3(cfg.model)
    loader = TokenLoader({"markov": markov_docs("markov", 200, data_seed)}, tcfg.seq_len, tcfg.micro_batch,
                         seed=tcfg.seed, intra_doc=tcfg.intra_doc_mask)
    return ctx, Trainer(ctx, model, loader, tcfg, Resumer(ctx))


def resume_and_fit(ctx: StageContext, trainer: Trainer):
    state = trainer.resumer.latest()
    if state is not None:
        trainer.load_state_dict(state)
    return trainer.fit()
