#!/usr/bin/env bash
# Training speed and memory of the gradient tape (issue 16, deliver item 5): executor inference
# against tape forward+backward (one SGD-ready step: zeroGrad, forward, backward) at batch 64 on
# the ResNet fixture (and any models given). The speed ratio comes from one process that alternates
# two inference runs and one training step (as distillation alternates teacher and student), in
# blocks: the median block ratio and its range, so the machine's drift over minutes cancels.
# Peak RSS and CPU rates come from one process per mode, so each peak RSS is its own; img/CPU-s
# counts only that process's CPU time. Targets: train/infer >= 1/3, peak RSS train/infer <= 3x.
# Without MODEL arguments: the ResNet fixture and the same pruned to 50% of its MACs, plus the
# projected time of 2 distillation epochs on 60k images (student steps + teacher forwards).
# Training steps run as finetune runs them: Conv gradients with bf16 products where the CPU
# has AVX-512 BF16 (GRAD_PRECISION=fp32: float32 throughout, as before that existed).
#   bench/train_speed.sh [BUILD_DIR] [MODEL...] > table.md
#   (THREADS=2 BATCH=64 ITERS=20 BLOCKS=9 GRAD_PRECISION=bf16)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
shift || true
MODELS=("$@")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [ ${#MODELS[@]} -eq 0 ]; then
  "$BUILD/nncompress" -q prune models/resnet.onnx -o "$WORK/resnet_pruned50.onnx" --target-macs 0.5 >/dev/null
  MODELS=(models/resnet.onnx "$WORK/resnet_pruned50.onnx")
fi
THREADS=${THREADS:-2}
BATCH=${BATCH:-64}
ITERS=${ITERS:-20}
BLOCKS=${BLOCKS:-9}
GRAD=${GRAD_PRECISION:-bf16}
BIN="$BUILD/nnc_train_bench"

echo "$(/usr/bin/python3 tools/doc_stamp.py --binary "$BUILD/nncompress" 2>/dev/null || git rev-parse --short HEAD)" \
  "threads=$THREADS batch=$BATCH iters=$ITERS blocks=$BLOCKS grad-precision=$GRAD" \
  "($("$BIN" "${MODELS[0]}" precision --grad-precision "$GRAD"))."
echo
echo "| model | inference img/s | train (fwd+bwd) img/s | ratio (median of $BLOCKS blocks; range) | inference img/CPU-s | train img/CPU-s | CPU ratio | inference peak RSS MiB | train peak RSS MiB | RSS ratio |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for model in "${MODELS[@]}"; do
  read -r _ ratio lo hi iw tw < <("$BIN" "$model" alternate --batch "$BATCH" --iters "$ITERS" \
    --threads "$THREADS" --blocks "$BLOCKS" --grad-precision "$GRAD")
  read -r _ _ ic ir < <("$BIN" "$model" infer --batch "$BATCH" --iters $((ITERS * 2)) --threads "$THREADS")
  read -r _ _ tc tr < <("$BIN" "$model" train --batch "$BATCH" --iters "$ITERS" --threads "$THREADS" \
    --grad-precision "$GRAD")
  /usr/bin/python3 -c "
ratio,lo,hi,iw,ic,ir,tw,tc,tr=$ratio,$lo,$hi,$iw,$ic,$ir,$tw,$tc,$tr
print('| $(basename "$model" .onnx) | %.0f | %.0f | %.3f (%.3f-%.3f) | %.0f | %.0f | %.2f | %.1f | %.1f | %.2fx |' % (iw,tw,ratio,lo,hi,ic,tc,tc/ic,ir,tr,tr/ir))"
  echo "$iw $tw" >> "$WORK/rates"
done
echo
for model in "${MODELS[@]}"; do
  read -r _ im tm half < <("$BIN" "$model" macs)
  /usr/bin/python3 -c "
im, tm, half = $im, $tm, $half
print('$(basename "$model" .onnx): multiply-adds per image %d for inference, %d for a training step '
      '(forward, dW, dX where the input carries a gradient): %.3fx, so train/infer is at most %.3f '
      'with float32 kernels as fast as inference and no other work; at most %.3f when the %d that '
      'bf16 products run (Conv dW, stride-1 dX) go at twice that rate.'
      % (im, tm, tm / im, im / tm, im / (tm - half / 2), half))"
done
if [ $# -eq 0 ]; then
  /usr/bin/python3 - "$WORK/rates" <<'PY'
import sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
teacher_infer, student_train = rows[0][0], rows[1][1]
t = 120000 / student_train + 120000 / teacher_infer
print()
print("Projected 2 epochs of distillation on 60k images (pruned student steps + unpruned teacher "
      "forwards, wall clock at these rates): %.0f s (%.1f min; target <= 10 min)." % (t, t / 60))
PY
fi
