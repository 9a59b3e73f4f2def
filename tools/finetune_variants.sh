#!/usr/bin/env bash
# Compares fine-tuning variants on held-out TRAINING images (the test set is not read): the
# ResNet fixture pruned to 50% of its MACs (contribution, global, lsq, 4 steps, calibrated on the
# first 1024 of images 0:50000), then `nncompress finetune` for 2 epochs on images 0:50000 WITHOUT
# labels, each variant with its extra flags; top-1 by `nncompress eval` on images 50000:60000.
# Prints one table row per variant with the wall and CPU seconds of the fine-tuning.
#
#   tools/finetune_variants.sh                       # the default variant list below
#   tools/finetune_variants.sh "--ema 0.999" "--augment-flip --augment-shift 2"
# Needs a Release build in build/. Each variant is 100k training images (minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/nncompress
data=/usr/share/datasets/fashion-mnist
out=build/finetune-variants
mkdir -p "$out"
pre=(--mean 0.2860 --std 0.3530)
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=("" "--ema 0.995" "--ema 0.999" "--augment-flip"
  "--augment-shift 2" "--augment-shift 2 --augment-flip" "--ema 0.999 --augment-shift 2 --augment-flip"
  "--temperature 4" "--lr 2e-3" "--teacher-label-weight 0.5")
top1() {
  "$bin" -q eval "$1" --data $data/train-images-idx3-ubyte.gz --labels $data/train-labels-idx1-ubyte.gz \
    --data-range 50000:60000 "${pre[@]}" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["top1"])'
}
pruned=$out/pruned.onnx
[ -f "$pruned" ] || "$bin" -q prune models/resnet.onnx -o "$pruned" --method contribution \
  --target-macs 0.5 --allocation global --recover lsq --steps 4 --calib-size 1024 \
  --data $data/train-images-idx3-ubyte.gz --data-range 0:50000 "${pre[@]}"
echo "| variant | held-out top-1 % | wall s | CPU s |"
echo "|---|---|---|---|"
echo "| unpruned | $(python3 -c "print(f'{100*$(top1 models/resnet.onnx):.2f}')") | | |"
echo "| pruned, no fine-tuning | $(python3 -c "print(f'{100*$(top1 "$pruned"):.2f}')") | | |"
for v in "${variants[@]}"; do
  tuned=$out/tuned.onnx
  # shellcheck disable=SC2086
  /usr/bin/time -f "%e %U %S" -o "$out/time" "$bin" -q finetune "$pruned" -o "$tuned" \
    --teacher models/resnet.onnx --data $data/train-images-idx3-ubyte.gz --data-range 0:50000 \
    "${pre[@]}" --epochs 2 $v >/dev/null
  read -r wall user sys <"$out/time"
  echo "| ${v:-defaults} | $(python3 -c "print(f'{100*$(top1 "$tuned"):.2f}')") | $wall | $(python3 -c "print($user + $sys)") |"
  rm -f "$tuned"
done
