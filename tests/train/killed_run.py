"""Child process of the SIGKILL test: train, and after logging step `stop_at` say so and wait to be killed.

    python tests/train/killed_run.py ROOT STOP_AT THREADS
"""

import sys
import time
from pathlib import Path

import torch
from trainkit import make_trainer, resume_and_fit

root, stop_at, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
ctx, trainer = make_trainer(Path(root))


def sink(metrics, step):
    if step == stop_at:
        print(f"reached {step}", flush=True)
        time.sleep(600)


ctx.metrics_sink = sink
resume_and_fit(ctx, trainer)
