"""The Olmo 3 dense decoder, exactly as published.

Per layer: h = x + norm(attn(x)); out = h + norm(mlp(h)) -- RMSNorm on each sublayer's OUTPUT (Olmo 2/3's
"reordered norm"), QK-norm over the whole q and k projections before RoPE, SwiGLU, GQA, no biases, untied lm_head.
Three of every four layers attend within a sliding window; every 4th and the last attend to everything, and only
those get YaRN when it is on.

Module and parameter names are HF's Olmo3ForCausalLM names without the "model." prefix (`layers.0.self_attn.q_proj`,
`embed_tokens`, `norm`, `lm_head`), so HF import/export is a prefix rename (olmoflow/model/hf.py).

Training calls `model(ids, doc_ids, labels=..., z_loss=...)`, which returns loss sums from the LM head fused with
its cross-entropy (lm_loss.py) instead of logits; RMSNorm and RoPE have hand-written backward passes (fused.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from olmoflow.model import fused, rope
from olmoflow.model.attention import Mask, Masks, attend, document_positions, forward_masks
from olmoflow.model.config import ModelConfig
from olmoflow.model.lm_loss import LossSums, linear_cross_entropy
from olmoflow.model.token_logprobs import token_logprobs

if TYPE_CHECKING:
    from olmoflow.model.generation import KVCache


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused.rms_norm(x, self.weight, self.eps)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.head_dim = cfg.head_dim
        q_dim, kv_dim = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
        self.q_proj = nn.Linear(cfg.d_model, q_dim, bias=False)
        self.k_proj = nn.Linear(cfg.d_model, kv_dim, bias=False)
        self.v_proj = nn.Linear(cfg.d_model, kv_dim, bias=False)
        self.o_proj = nn.Linear(q_dim, cfg.d_model, bias=False)
        self.q_norm = RMSNorm(q_dim, cfg.norm_eps)
        self.k_norm = RMSNorm(kv_dim, cfg.norm_eps)
        self.gqa = cfg.n_kv_heads != cfg.n_heads

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: Mask,
                cache: KVCache | None = None) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q_norm(self.q_proj(x)).view(b, t, -1, self.head_dim)
        k = self.k_norm(self.k_proj(x)).view(b, t, -1, self.head_dim)
        v = self.v_proj(x).view(b, t, -1, self.head_dim)
        q, k = rope.apply(q, cos, sin).transpose(1, 2), rope.apply(k, cos, sin).transpose(1, 2)
        v = v.transpose(1, 2)
        if cache is not None:
            k, v = cache.update(k, v)
        out = attend(q, k, v, mask, self.gqa)  # SDPA with a boolean mask, or flex_attention with a BlockMask
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.mlp_hidden, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.mlp_hidden, bias=False)
        self.down_proj = nn.Linear(cfg.mlp_hidden, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, is_full: bool):
        super().__init__()
        self.is_full = is_full
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.post_feedforward_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: Mask,
                cache: KVCache | None = None) -> torch.Tensor:
        h = x + self.post_attention_layernorm(self.self_attn(x, cos, sin, mask, cache))
        return h + self.post_feedforward_layernorm(self.mlp(h))


class Olmo3(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg, cfg.layer_is_full(i)) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Every matrix ~ N(0, init_std) truncated at 3 sigma (OLMo-core's Olmo 3 init), every norm weight 1.

        The output norms keep the residual stream's scale independent of depth, so tiny models need no
        depth-scaled init.
        """
        std = self.cfg.init_std
        for p in self.parameters():
            if p.ndim == 1:
                p.fill_(1.0)
            else:
                nn.init.trunc_normal_(p, mean=0.0, std=std, a=-3 * std, b=3 * std)

    def compile_blocks(self) -> None:
        """torch.compile every block in place (parameter names unchanged): inductor fuses RMSNorm, RoPE, SwiGLU and
        the residual adds into a few C++ loops. Measured at tiny scale on CPU: steps ~8% faster for ~15-25 s of
        compiling (needs a C++ compiler), so it pays off after a few hundred steps. For training only: a KV-cache
        forward through compiled blocks would compile again."""
        for block in self.layers:
            block.compile()

    def forward(self, input_ids: torch.Tensor, doc_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                z_loss: float = 0.0, per_token: bool = False, temperature: float = 1.0) -> torch.Tensor | LossSums:
        """Logits [B, T, vocab] (float32) for token ids [B, T]; with doc_ids [B, T] no token sees another document,
        and each document's positions start at 0.

        With labels [B, T] (IGNORE = not scored), the loss sums instead (ce + z_loss * z, ce, z), computed without
        materializing the logits (olmoflow/model/lm_loss.py); the training step's path. With per_token as well, the
        log-probability of each label [B, T] instead (0 where IGNORE; differentiable; under softmax(logits /
        temperature)), also without the logits (olmoflow/model/token_logprobs.py): post-training's and per-position
        scoring's path.
        """
        t = input_ids.shape[1]
        if doc_ids is None:
            positions = torch.arange(t, device=input_ids.device)[None]  # one row of RoPE tables, broadcast over B
        else:
            positions = document_positions(doc_ids)
        masks = forward_masks(self.cfg, t, doc_ids, input_ids.device)
        hidden = self.hidden(input_ids, positions, masks)
        if labels is not None and per_token:
            return token_logprobs(hidden, self.lm_head.weight, labels, temperature)
        if labels is not None:
            return linear_cross_entropy(hidden, self.lm_head.weight, labels, z_loss)
        return self.lm_head(hidden).float()

    def hidden(self, input_ids: torch.Tensor, positions: torch.Tensor, masks: Masks,
               caches: list[KVCache] | None = None) -> torch.Tensor:
        """Final-norm hidden states [B, T, d_model] at explicit positions [B or 1, T]; generation passes KV caches."""
        cfg = self.cfg
        device = input_ids.device
        inv, scale = rope.inv_freq(cfg.head_dim, cfg.rope_theta, None, device)
        tables = {False: rope.cos_sin(inv, scale, positions)}
        if cfg.yarn is None:
            tables[True] = tables[False]
        else:
            inv, scale = rope.inv_freq(cfg.head_dim, cfg.rope_theta, cfg.yarn, device)
            tables[True] = rope.cos_sin(inv, scale, positions)
        x = self.embed_tokens(input_ids)
        for i, layer in enumerate(self.layers):
            cos, sin = tables[layer.is_full]
            x = layer(x, cos, sin, masks.get(layer.is_full), None if caches is None else caches[i])
        return self.norm(x)
