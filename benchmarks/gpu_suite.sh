#!/usr/bin/env bash
# Every benchmark at the released sizes, in one run on a CUDA machine (sized for a few minutes on an
# H100/H200-class GPU); paste the printed tables into benchmarks/RESULTS.md with the date and this command.
#   bash benchmarks/gpu_suite.sh                      # this implementation alone
#   OFFICIAL=/path/to/ResTok bash benchmarks/gpu_suite.sh   # plus the side-by-side run (needs the official
#                                                           # code's dependencies: timm, omegaconf, einops)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# Sampling: HAR (9 calls) vs vanilla AR (128), KV cache on; fp32 and bf16 (bf16 also decodes in bf16); the
# last column is the time of the 50,000 samples a gFID needs (generation + decode).
$PY bench_sampling.py --size full --batches 1 16 64 --dtype fp32 bf16 --no-uncached --repeat 3
# torch.compile of the cached step (one graph per HAR step shape) at the gFID batch size.
$PY bench_sampling.py --size full --batches 64 --dtype bf16 --compile --no-uncached --repeat 3
# KV cache vs none, once (the uncached path recomputes the whole prefix at every call).
$PY bench_sampling.py --size full --batches 16 --dtype bf16 --repeat 2
$PY bench_tokenizer.py --size full --batches 1 16 --dtype fp32 bf16 --repeat 3
# Training steps: time, peak memory, achieved TFLOP/s against the chip's dense peak.
$PY bench_train_step.py --size full --batch 8 --dtype fp32 bf16 --repeat 3
if [ -n "${OFFICIAL:-}" ]; then
  $PY vs_official.py --official "$OFFICIAL" --size full --device cuda --tok-batches 1 16 --sample-batches 16 64 --train-batch 4 --repeat 3
  $PY vs_official.py --official "$OFFICIAL" --size full --device cuda --skip tokenizer train --sample-batches 16 64 --gen-dtype bf16 --repeat 3
fi
