#!/usr/bin/env bash
# Issue 3's GPU checks in one call on a CUDA machine, logs under $OUT (or the first argument, default gpu-out/):
#   1. the CUDA tests: compiled flex_attention forward + backward against SDPA in fp32 and bf16, a whole Olmo3
#      training step with flex against SDPA, the compiled LM-head chunks (loss and per-token log-probabilities)
#      against autograd, the trainer on one GPU (bf16 autocast, compiled blocks) against the same run on the CPU,
#      SFT / DPO / RLVR on the GPU against the CPU;
#   2. bench/gpu_step.py at seq 4096 (~1.5B, bf16), runs $RUNS_4K (default: olmoflow sdpa / flex on plain and
#      packed rows, compiled blocks, transformers), profiled with PROFILE=1;
#   3. bench/gpu_step.py at seq 8192 with Olmo 3's 4096 window, where sliding layers really slide ($RUNS_8K).
# An empty RUNS_* skips that part; each part has its own time limit, so one that hangs or crashes leaves the
# others' figures, and the bench prints a JSON line per run as it ends. Runs from the repo root with PYTHONPATH=.
# (nothing to install beyond torch, transformers, pydantic and safetensors).
set -uo pipefail
out=${OUT:-${1:-gpu-out}}
mkdir -p "$out"
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c 'import torch, transformers, triton; print("torch", torch.__version__, "transformers", transformers.__version__, "triton", triton.__version__)'
tests=${TESTS-tests/model/test_flex.py tests/model/test_lm_loss.py tests/model/test_token_logprobs.py \
  tests/train/test_loop.py tests/stages/test_post_stages.py}
if [ -n "$tests" ]; then
  # shellcheck disable=SC2086 -- a list of test files
  timeout "${TEST_S:-240}" python3 -m pytest $tests -k cuda -q -rs --noconftest -p no:cacheprovider 2>&1 \
    | tee "$out/pytest_cuda.log"
fi
runs_4k=${RUNS_4K-sdpa,flex,sdpa-docs,flex-docs,sdpa-compiled,flex-docs-compiled,transformers}
if [ -n "$runs_4k" ]; then
  # PROFILE=1: device time per kind of kernel in each run's JSON, a kernel table per run under prof4k/ (the device
  # tool brings back 8 files: profile 5 runs at most)
  timeout "${BENCH_S:-300}" python3 bench/gpu_step.py --runs "$runs_4k" ${PROFILE:+--profile "$out/prof4k"} \
    2>&1 | tee "$out/gpu_step_4k.log"
fi
runs_8k=${RUNS_8K-sdpa,flex,flex-compiled}
if [ -n "$runs_8k" ]; then
  timeout "${BENCH_8K_S:-150}" python3 bench/gpu_step.py --seq 8192 --window 4096 --batch 2 --steps 6 \
    --runs "$runs_8k" 2>&1 | tee "$out/gpu_step_8k.log"
fi
