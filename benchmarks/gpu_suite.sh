#!/usr/bin/env bash
# Every GPU figure of benchmarks/RESULTS.md in one run (sized for about 8 minutes on one H100/H200-class GPU), each
# table written to a file; a step that fails or overruns is logged and the others still run.
#
#   bash benchmarks/prepare_gpu_suite.sh        # once, on a machine with PyPI: wheels + official code -> .gpu-carry
#   bash benchmarks/gpu_suite.sh [OUT_DIR]      # on the GPU machine (OUT_DIR: default $OUT, else benchmarks/gpu-out)
#   SIZE=tiny DEVICE=cpu bash benchmarks/gpu_suite.sh /tmp/rehearsal    # the rehearsal on a CPU, tiny sizes
#
# Outputs: one Markdown table per step (NN-name.md), its log (NN-name.log), env.txt (machine, versions, commands),
# failures.txt (steps that did not finish) and summary.md (every table, in order).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
OUTDIR=${1:-${OUT:-$HERE/gpu-out}}
SIZE=${SIZE:-full}          # full: GPT-L HAR + restok-l-128 (the released sizes); tiny: the CPU rehearsal
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python}
CARRY=${CARRY:-$HERE/.gpu-carry}
STEP_TIMEOUT=${STEP_TIMEOUT:-300}
mkdir -p "$OUTDIR"
: > "$OUTDIR/failures.txt"

# ---- environment: install only what this machine lacks, from the carried wheels (no network on GPU machines)
if [ -d "$CARRY/wheels" ]; then
  for mod_pkg in numpy:numpy PIL:pillow safetensors:safetensors yaml:pyyaml tqdm:tqdm huggingface_hub:huggingface_hub \
                 einops:einops omegaconf:omegaconf antlr4:antlr4_python3_runtime timm:timm; do
    mod=${mod_pkg%%:*}; pkg=${mod_pkg##*:}
    if ! $PY -c "import $mod" 2>/dev/null; then
      # huggingface_hub's own dependencies come with it; timm and omegaconf never pull torch from the wheel folder
      deps=""; case $pkg in timm|omegaconf) deps="--no-deps";; esac
      $PY -m pip install -q --no-index --find-links "$CARRY/wheels" $deps "$pkg" >>"$OUTDIR/env.txt" 2>&1 \
        || echo "install $pkg" >>"$OUTDIR/failures.txt"
    fi
  done
fi
$PY -c "import restok" 2>/dev/null || $PY -m pip install -q --no-deps --no-build-isolation -e "$ROOT" >>"$OUTDIR/env.txt" 2>&1 \
  || PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
OFFICIAL=${OFFICIAL:-$CARRY/official}
{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  size: $SIZE  device: $DEVICE  repo: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
  [ -f "$CARRY/official.commit" ] && echo "official code: $(cat "$CARRY/official.commit")"
} >>"$OUTDIR/env.txt" 2>&1
cat "$OUTDIR/env.txt"
if [ "$DEVICE" = cuda ] && ! $PY -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  echo "DEVICE=cuda but torch sees no CUDA device" | tee -a "$OUTDIR/failures.txt"; exit 2
fi

N=0
step() {  # step NAME COMMAND... : run with a time limit; table to NN-NAME.md, everything else to NN-NAME.log
  local name=$1; shift
  N=$((N + 1)); local tag; tag=$(printf '%02d-%s' "$N" "$name")
  echo "== $tag: $*" | tee -a "$OUTDIR/env.txt"
  local t0=$SECONDS
  (cd "$HERE" && timeout "$STEP_TIMEOUT" "$PY" "$@") >"$OUTDIR/$tag.md" 2>"$OUTDIR/$tag.log"
  local rc=$?
  echo "   rc=$rc, $((SECONDS - t0)) s" | tee -a "$OUTDIR/env.txt"
  [ $rc -eq 0 ] || { echo "$tag rc=$rc (see $tag.log)" >>"$OUTDIR/failures.txt"; tail -5 "$OUTDIR/$tag.log"; }
}

if [ "$SIZE" = full ]; then B3="16 64 256"; B2="16 64"; BC=64; TB=8; VTB="1 16"; VSB="16 64"; VTR=4
else B3="2 4 8"; B2="2 4"; BC=4; TB=2; VTB="1 2"; VSB="2"; VTR=2; fi
VSIZE=$([ "$SIZE" = full ] && echo full || echo small)
R=${REPEAT:-3}

# 1. HAR tokens and tokens+decode img/s with the released recipe, fp32 and bf16, eager; FLOPs and the 50k floor
step sampling "bench_sampling.py" --size "$SIZE" --device "$DEVICE" --batches $B3 --dtype fp32 bf16 --har-only --no-uncached --repeat "$R"
# 2. the tokenizer: encode / decode img/s
step tokenizer "bench_tokenizer.py" --size "$SIZE" --device "$DEVICE" --batches $B2 --dtype fp32 bf16 --repeat "$R"
# 3. one training step of each model: time, peak memory, TFLOP/s against the chip's peak
step train_step "bench_train_step.py" --size "$SIZE" --device "$DEVICE" --batch "$TB" --dtype fp32 bf16 --repeat "$R"
# 4. side by side with the official code (outputs checked equal before timing), GPT fp32 and as the official script (bf16)
if [ -d "$OFFICIAL/modeling" ]; then
  step vs_official "vs_official.py" --official "$OFFICIAL" --size "$VSIZE" --device "$DEVICE" --tok-batches $VTB --sample-batches $VSB \
    --train-batch "$VTR" --repeat 2
  step vs_official_bf16 "vs_official.py" --official "$OFFICIAL" --size "$VSIZE" --device "$DEVICE" --skip tokenizer train \
    --sample-batches $VSB --gen-dtype bf16 --repeat 2
else
  echo "no official checkout at $OFFICIAL: side-by-side skipped" | tee -a "$OUTDIR/failures.txt"
fi
# 5. vanilla AR (128 calls) against HAR (9) at one batch, eager
step sampling_ar "bench_sampling.py" --size "$SIZE" --device "$DEVICE" --batches "$BC" --dtype bf16 --no-uncached --repeat 2
# 6. compiled (CUDA graphs on CUDA): last, as the first call per batch size compiles 9 step graphs + the decode;
#    the table checks seeded and greedy tokens against eager
STEP_TIMEOUT=${COMPILE_TIMEOUT:-420} step sampling_compiled "bench_sampling.py" --size "$SIZE" --device "$DEVICE" --batches "$BC" \
  --dtype bf16 fp32 --har-only --no-uncached --compile --only-compiled --repeat 2

for f in "$OUTDIR"/[0-9][0-9]-*.md; do echo "<!-- $(basename "$f") -->"; cat "$f"; echo; done >"$OUTDIR/summary.md"
echo "done; tables in $OUTDIR/summary.md; failures: $(wc -l <"$OUTDIR/failures.txt")"
