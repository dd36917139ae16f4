"""Scaffolding shared across test folders: the tiny Olmo3 most tests train or score, a stage context over plain
folders (to run a stage's `run` without the runner), the full weights of a DCP in-stage checkpoint, a metrics sink
that kills a run at a given step (for resume tests), and a free local port for servers the tests start.

torch is imported inside tiny_olmo: the chart and cluster tests import this module for free_port alone, and
collecting them should not pay for importing torch.
"""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from olmoflow.contract.context import InputArtifact, StageContext
from olmoflow.contract.workdir import WorkDir
from olmoflow.model import ModelConfig

if TYPE_CHECKING:
    import torch

    from olmoflow.config import FlowConfig
    from olmoflow.model import Olmo3

TINY_MODEL = {"d_model": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "head_dim": 8, "mlp_hidden": 64,
              "max_seq_len": 64, "sliding_window": 16, "rope_theta": 10_000.0, "init_std": 0.1}


def tiny_model_config(vocab_size: int, **overrides) -> ModelConfig:
    """A 2-layer GQA Olmo3 (init_std 0.1, so logits are visibly non-uniform); vocab_size has no tiny default."""
    return ModelConfig(**{**TINY_MODEL, "vocab_size": vocab_size, **overrides})


def tiny_olmo(vocab_size: int, seed: int = 0, **overrides) -> Olmo3:
    import torch

    from olmoflow.model import Olmo3

    torch.manual_seed(seed)
    return Olmo3(tiny_model_config(vocab_size, **overrides))


def make_test_context(stage: str, cfg: FlowConfig, root: Path,
                      inputs: dict[str, InputArtifact] | None = None) -> StageContext:
    """A context over plain folders, for tests that run a stage's `run` without the runner."""
    out = root / f"{stage}-out"
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    return StageContext(stage=stage, cfg=cfg, inputs=inputs or {}, out=out, work=WorkDir(root / f"{stage}.work"))


def input_from_dir(path: Path, kind: str) -> InputArtifact:
    """Wrap a plain payload folder as an input artifact."""
    return InputArtifact(uri=str(path), kind=kind, fingerprint="test", manifest={}, path=Path(path))


def read_model_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The full model weights of the DCP in-stage checkpoint in `folder`, without building a model."""
    import warnings

    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    from olmoflow.train import dist_checkpoint

    reader = dcp.FileSystemReader(str(Path(folder) / dist_checkpoint.FOLDER))
    stored = reader.read_metadata().state_dict_metadata
    weights = {k: torch.empty(m.size, dtype=m.properties.dtype) for k, m in stored.items()
               if k.startswith("model.") and isinstance(m, TensorStorageMetadata)}
    with warnings.catch_warnings():  # DCP's note that no_dist assumes one process
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        dcp.load(weights, storage_reader=reader, no_dist=True)
    return {k.removeprefix("model."): v for k, v in weights.items()}


class Stop(Exception):
    pass


def stop_at(step: int):
    """A metrics sink that raises Stop when the run logs `step`: an interruption at a known point."""
    def sink(metrics, at):
        if at == step:
            raise Stop
    return sink


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_url(url: str, proc, log: Path, timeout_s: float) -> None:
    """Until `url` answers (never through a proxy); fails with the log's tail if `proc` (the server) exits first."""
    import time
    import urllib.request

    import pytest

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{url}: process exited {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            opener.open(url, timeout=2)
            return
        except OSError:
            time.sleep(0.25)
    pytest.fail(f"{url} did not answer within {timeout_s:g} s: {log.read_text()[-2000:]}")
