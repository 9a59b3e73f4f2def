#!/usr/bin/env bash
# Training speed and memory of the gradient tape (issue 16, deliver item 5): executor inference
# against tape forward+backward (one SGD-ready step: zeroGrad, forward, backward) at batch 64 on
# the ResNet fixture (and any models given), each mode in its own process so each peak RSS is its
# own. img/s is wall clock; img/CPU-s counts only this process's CPU time (other processes on the
# cores barely move it). Targets: train/infer >= 1/3, peak RSS train/infer <= 3x.
#   bench/train_speed.sh [BUILD_DIR] [MODEL...] > table.md     (THREADS=2 BATCH=64 ITERS=20)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
shift || true
MODELS=("$@")
[ ${#MODELS[@]} -eq 0 ] && MODELS=(models/resnet.onnx)
THREADS=${THREADS:-2}
BATCH=${BATCH:-64}
ITERS=${ITERS:-20}
BIN="$BUILD/nnc_train_bench"

echo "$(/usr/bin/python3 tools/doc_stamp.py --binary "$BUILD/nncompress" 2>/dev/null || git rev-parse --short HEAD)" \
  "threads=$THREADS batch=$BATCH iters=$ITERS."
echo
echo "| model | inference img/s | train (fwd+bwd) img/s | ratio | inference img/CPU-s | train img/CPU-s | CPU ratio | inference peak RSS MiB | train peak RSS MiB | RSS ratio |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for model in "${MODELS[@]}"; do
  read -r _ iw ic ir < <("$BIN" "$model" infer --batch "$BATCH" --iters $((ITERS * 2)) --threads "$THREADS")
  read -r _ tw tc tr < <("$BIN" "$model" train --batch "$BATCH" --iters "$ITERS" --threads "$THREADS")
  /usr/bin/python3 -c "
iw,ic,ir,tw,tc,tr=$iw,$ic,$ir,$tw,$tc,$tr
print('| $(basename "$model" .onnx) | %.0f | %.0f | %.2f | %.0f | %.0f | %.2f | %.1f | %.1f | %.2fx |' % (iw,tw,tw/iw,ic,tc,tc/ic,ir,tr,tr/ir))"
done
