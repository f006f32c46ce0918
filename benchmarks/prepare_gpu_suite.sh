#!/usr/bin/env bash
# Everything the GPU suite needs that a GPU machine without network lacks, into benchmarks/.gpu-carry/ (ignored by
# git, about 20 MB): wheels of restok's dependencies and of the official code's (timm, omegaconf, einops, ...), no
# torch (the GPU machine brings its CUDA build), and a checkout of the official code from a local mirror.
#   bash benchmarks/prepare_gpu_suite.sh [OFFICIAL_GIT_DIR]    # default: /work/.mirror/Kwai-Kolors+ResTok/repo
# then run the suite there with that folder carried, e.g. with the device tool:
#   run(command="bash benchmarks/gpu_suite.sh", carry=["benchmarks/.gpu-carry"])
set -euo pipefail
cd "$(dirname "$0")"
CARRY=.gpu-carry
GIT_DIR=${1:-/work/.mirror/Kwai-Kolors+ResTok/repo}
PY=${PYTHON:-python}
rm -rf "$CARRY" && mkdir -p "$CARRY/wheels" "$CARRY/official"
# wheels for CPython $PYVERS (default 3.11, this project's Python) on x86_64 Linux; the suite installs only what the
# GPU machine lacks. Resolved with their dependencies, except timm and omegaconf, whose requirements would pull
# torch/torchvision (the machine's CUDA build stays) or a source-only antlr4 (built below).
PYVERS=${PYVERS:-3.11}
PLAT="--platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform any"
for pyver in $PYVERS; do
  $PY -m pip download -q --only-binary=:all: --python-version "$pyver" $PLAT -d "$CARRY/wheels" \
    numpy pillow safetensors huggingface_hub tqdm pyyaml einops 2>&1 | grep -v "is ignored" || true
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" $PLAT -d "$CARRY/wheels" timm omegaconf \
    2>&1 | grep -v "is ignored" || true
done
# antlr4-python3-runtime 4.9.3 (omegaconf's parser runtime) ships only a source archive: build its wheel here
$PY -m pip wheel -q --no-deps -w "$CARRY/wheels" "antlr4-python3-runtime==4.9.3" 2>/dev/null
# the official code, without its images (not needed, and not all of them are in the mirror)
git --git-dir="$GIT_DIR" ls-tree -r HEAD --name-only | grep -v -E '^assets/|\.(png|jpg|jpeg|gif|pdf)$' > "$CARRY/official.files"
git --git-dir="$GIT_DIR" archive HEAD $(cat "$CARRY/official.files") | tar -x -C "$CARRY/official"
git --git-dir="$GIT_DIR" log -1 --format='%H %cs %s' > "$CARRY/official.commit"
du -sh "$CARRY"
