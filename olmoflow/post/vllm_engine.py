"""The rollout engine on vLLM, for a GPU cluster (`rlvr.engine: vllm`), behind olmoflow/post/engine.py's interface.

NOT TESTED HERE: vLLM is not installed on the machines this project is built and tested on (it needs CUDA); the
built-in engine is the default and the tested one. vLLM is imported only when this engine is made.

How it maps: vLLM's `LLMEngine` already does continuous batching and paged KV caches, so `submit` is `add_request`
and `step` is one `engine.step()`. Weights come from the learner as an olmoflow state dict: the names are HF's
without the "model." prefix (olmoflow/model/hf.py), so `load_weights` renames them and hands them to the model
runner's `load_weights` (an in-place swap between steps: vLLM's in-flight update). vLLM reports each sampled
token's log-probability (`logprobs=0`: the sampled token's own); the policy version of a token is the version the
engine held at the step that produced it.
"""

from __future__ import annotations

from typing import Any

import torch

from olmoflow.model.config import ModelConfig
from olmoflow.model.hf import hf_config_dict, hf_name
from olmoflow.post.engine import Finished, Request, RolloutEngine


class VLLMEngine(RolloutEngine):
    def __init__(self, model_cfg: ModelConfig, *, slots: int, max_len: int, temperature: float, top_p: float,
                 eos_id: int | None, device: str = "cuda", model_dir: str | None = None,
                 stop_ids: tuple[int, ...] = ()):
        try:
            from vllm import EngineArgs, LLMEngine, SamplingParams
        except ImportError as e:
            raise ImportError("rlvr.engine=vllm: vLLM is not installed in this image (pip install vllm on a "
                              "CUDA machine), or use rlvr.engine=builtin") from e
        if model_dir is None:  # vLLM builds the model from an HF config; weights come with load_weights
            import json
            import tempfile
            model_dir = tempfile.mkdtemp(prefix="olmoflow-vllm-")
            with open(f"{model_dir}/config.json", "w") as f:
                json.dump(hf_config_dict(model_cfg, eos_token_id=eos_id), f)
        self.engine = LLMEngine.from_engine_args(EngineArgs(model=model_dir, max_num_seqs=slots,
                                                            max_model_len=max_len, load_format="dummy",
                                                            skip_tokenizer_init=True, enable_prefix_caching=True))
        self.params = SamplingParams
        self.temperature, self.top_p, self.eos_id = temperature, top_p, eos_id
        self.stop_ids = [t for t in (eos_id, *stop_ids) if t is not None]  # a plain template's newline tokens too
        self.pending: tuple[dict[str, torch.Tensor], int] | None = None
        self.running: dict[str, Finished] = {}
        self.finished: list[Finished] = []
        self.waiting: list[Request] = []
        self.version = -1

    def _model(self) -> Any:
        return self.engine.model_executor.driver_worker.model_runner.model

    def load_weights(self, state: dict[str, torch.Tensor], version: int) -> None:
        self._model().load_weights((hf_name(k), v) for k, v in state.items())
        self.version = version

    def update_weights(self, state: dict[str, torch.Tensor], version: int) -> None:
        if version > max(self.version, self.pending[1] if self.pending else -1):
            self.pending = (state, version)

    def submit(self, request: Request) -> None:
        self.waiting.append(request)

    def _admit(self) -> None:
        keep = []
        for r in self.waiting:
            if r.min_version > self.version:
                keep.append(r)
                continue
            params = self.params(temperature=self.temperature, top_p=self.top_p, max_tokens=r.max_new_tokens,
                                 seed=r.seed, logprobs=0,
                                 stop_token_ids=self.stop_ids or None)
            self.engine.add_request(str(r.id), {"prompt_token_ids": r.prompt}, params)
            self.running[str(r.id)] = Finished(r.id, list(r.prompt))
        self.waiting = keep

    def step(self) -> None:
        if self.pending is not None:
            self.load_weights(*self.pending)
            self.pending = None
        self._admit()
        for out in self.engine.step():
            f = self.running.get(out.request_id)
            if f is None:
                continue
            comp = out.outputs[0]
            new = comp.token_ids[len(f.tokens):]
            f.tokens += list(new)
            f.logprobs += [lp[t].logprob for t, lp in zip(new, comp.logprobs[len(f.logprobs):])]
            f.versions += [self.version] * len(new)
            if out.finished:
                self.finished.append(self.running.pop(out.request_id))

    def collect(self) -> list[Finished]:
        out, self.finished = self.finished, []
        return out

    @property
    def busy(self) -> bool:
        return bool(self.running) or any(r.min_version <= self.version for r in self.waiting) or (
            bool(self.waiting) and self.pending is not None)

    def drop(self, ids: set[int]) -> None:
        self.waiting = [r for r in self.waiting if r.id not in ids]
        for i in ids:
            if str(i) in self.running:
                self.engine.abort_request(str(i))
                del self.running[str(i)]
