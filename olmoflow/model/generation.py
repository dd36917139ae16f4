"""Batched sampling with a KV cache: temperature / top-p, greedy at temperature 0, rows stop at eos.

Prompts of different lengths are left-padded into one batch, so every row appends its next token in the same cache
column; pad keys are masked out and each row's positions start at 0 at its first real token. Full layers keep every
key/value. A sliding layer keeps only the last window - 1, because with the new token that is exactly the window the
next query may see.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from olmoflow.model.attention import Masks, position_mask
from olmoflow.model.olmo3 import Olmo3


class KVCache:
    """One layer's keys and values [B, kv_heads, T, head_dim]; `keep` = how many to retain (None = all)."""

    def __init__(self, keep: int | None):
        self.keep = keep
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append the new keys/values; return everything this step's queries attend over."""
        if self.k is not None:
            k, v = torch.cat((self.k, k), dim=2), torch.cat((self.v, v), dim=2)
        start = 0 if self.keep is None else max(0, k.shape[2] - self.keep)
        self.k, self.v = k[:, :, start:], v[:, :, start:]
        return k, v


def sampling_logp(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Log-probabilities [B, vocab] of the distribution sampled at this temperature (> 0) and top-p."""
    logp = F.log_softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_logp, order = logp.sort(dim=-1, descending=True)
        probs = sorted_logp.exp()
        # Drop a token when the more likely ones already reach top_p; the most likely always stays.
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logp = F.log_softmax(logp.masked_fill(drop, float("-inf")), dim=-1)
    return logp


def pick(logits: torch.Tensor, temperature: float, top_p: float,
         generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Next tokens [B] and their log-probabilities [B] under the distribution they were drawn from.

    Greedy (temperature 0) reports the model's own temperature-1 log-probabilities: its point mass would say 0.
    """
    if temperature == 0:
        logp = F.log_softmax(logits, dim=-1)
        tokens = logp.argmax(dim=-1)
    else:
        logp = sampling_logp(logits, temperature, top_p)
        tokens = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)
    return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1)


@torch.no_grad()
def generate(model: Olmo3, prompts: list[list[int]], max_new_tokens: int, temperature: float = 1.0,
             top_p: float = 1.0, eos_id: int | None = None,
             generator: torch.Generator | None = None) -> tuple[list[list[int]], list[list[float]]]:
    """Up to max_new_tokens new tokens per prompt (a row's last token is eos_id when it stopped there), and the
    log-probability of each under the distribution it was sampled from."""
    if any(len(p) == 0 for p in prompts):
        raise ValueError(f"generate: prompt {[len(p) for p in prompts].index(0)} is empty")
    cfg = model.cfg
    device = next(model.parameters()).device
    b, width = len(prompts), max(len(p) for p in prompts)
    ids = torch.zeros(b, width, dtype=torch.long, device=device)
    valid = torch.zeros(b, width, dtype=torch.bool, device=device)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
        valid[i, width - len(p):] = True
    pos = (valid.cumsum(dim=1) - 1).clamp(min=0)
    caches = [KVCache(None if layer.is_full else cfg.sliding_window - 1) for layer in model.layers]

    # A pad query sees no real key; letting it see itself keeps its softmax finite (its output is never used).
    eye = torch.eye(width, dtype=torch.bool, device=device)
    masks = Masks(full=position_mask(pos, pos, valid, None) | eye,
                  sliding=position_mask(pos, pos, valid, cfg.sliding_window) | eye)
    hidden = model.hidden(ids, pos, masks, caches)[:, -1]

    new_tokens: list[list[int]] = [[] for _ in range(b)]
    logprobs: list[list[float]] = [[] for _ in range(b)]
    done = torch.zeros(b, dtype=torch.bool, device=device)
    for step in range(max_new_tokens):
        tokens, logp = pick(model.lm_head(hidden).float(), temperature, top_p, generator)
        # one copy to the host per step, not one per row (each a GPU sync)
        for i, (tok, lp, stopped) in enumerate(zip(tokens.tolist(), logp.tolist(), done.tolist())):
            if not stopped:
                new_tokens[i].append(tok)
                logprobs[i].append(lp)
        if eos_id is not None:
            done |= tokens == eos_id
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        q_pos = pos[:, -1:] + 1
        n_sliding = min(pos.shape[1], cfg.sliding_window - 1) + 1  # what a sliding cache returns after update
        pos = torch.cat((pos, q_pos), dim=1)
        valid = torch.cat((valid, torch.ones(b, 1, dtype=torch.bool, device=device)), dim=1)
        masks = Masks(full=position_mask(q_pos, pos, valid, None),
                      sliding=position_mask(q_pos, pos[:, -n_sliding:], valid[:, -n_sliding:], cfg.sliding_window))
        hidden = model.hidden(tokens[:, None], q_pos, masks, caches)[:, -1]
    return new_tokens, logprobs
