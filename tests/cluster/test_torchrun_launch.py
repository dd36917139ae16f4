"""The torchrun command a PyTorchJob's pods run, executed for real: two "nodes" (two torchrun agents on 127.0.0.1,
as the kubelet would expand $(MASTER_ADDR):$(MASTER_PORT)) meet through the c10d rendezvous, and every rank sees the
world size and the HSDP mesh shape the manifest promised."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kit import free_port

from olmoflow.cluster.config import ClusterConfig
from olmoflow.cluster.jobs import job_spec, pytorch_job

WORKER = """
import os, torch, torch.distributed as dist
dist.init_process_group("gloo")
t = torch.ones(1)
dist.all_reduce(t)
# One write of the whole line: ranks share the node's stdout pipe, and print's two writes (text, then newline)
# interleaved there once in ~25 runs. A single write under PIPE_BUF bytes is atomic.
os.write(1, (f"rank={dist.get_rank()} world={dist.get_world_size()} sum={int(t.item())} "
             f"replicate={os.environ['OLMOFLOW_REPLICATE']} shard={os.environ['OLMOFLOW_SHARD']}\\n").encode())
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_two_nodes_meet_through_the_rendezvous_and_see_the_mesh(tmp_path):
    cfg = ClusterConfig(namespace="ml", gpus_per_node=2)
    job = pytorch_job(job_spec(cfg, "pretrain", [sys.executable, "-c", WORKER], nodes=2, name="pretrain-local"))
    master = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    port = str(free_port())
    # What the kubelet does with the operator's env: expand $(MASTER_ADDR) and $(MASTER_PORT) in the command.
    command = [a.replace("$(MASTER_ADDR)", "127.0.0.1").replace("$(MASTER_PORT)", port) for a in master["command"]]
    command[0] = str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, **{e["name"]: e["value"] for e in master["env"] if "value" in e}, "HOME": str(tmp_path),
           "OMP_NUM_THREADS": "1"}
    env = {k: v for k, v in env.items() if not k.upper().endswith("_PROXY")}
    nodes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=240)[0] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], "\n".join(outputs)[-3000:]
    lines = sorted(ln for out in outputs for ln in out.splitlines() if ln.startswith("rank="))
    assert lines == [f"rank={r} world=4 sum=4 replicate=2 shard=2" for r in range(4)]
