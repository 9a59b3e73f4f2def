#!/usr/bin/env bash
# Benchmark (not a test) for issue 5: calibration statistics of the pruning criteria.
#  1. Peak RSS of `prune --method contribution|activation` on the largest fixture (resnet) with
#     100 vs 1000 calibration images: the statistics are streamed, so memory must not grow.
#  2. Wall time of `prune --method activation` on torchvision ResNet-18 at 224x224 (random
#     weights, exported by tools/export_torchvision.py when missing) with 64 random images.
# Prints a markdown table.   bench/prune_calibration.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
bin=${NNC_BIN:-build/nncompress}
[ -x "$bin" ] || { echo "build first: cmake --build build --target nncompress" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
train=(--data /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz --data-range 0:50000
  --mean 0.2860 --std 0.3530)

measure() {  # prints "seconds peak_kb"
  /usr/bin/time -f "%e %M" -o "$tmp/time" "$@" >/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
  cat "$tmp/time"
}

/usr/bin/python3 tools/doc_stamp.py --binary "$bin"
echo
echo "| run | images | wall s | peak RSS MiB |"
echo "|---|---|---|---|"
for method in contribution activation; do
  for n in 100 1000; do
    read -r s kb < <(measure "$bin" prune models/resnet.onnx -o "$tmp/p.onnx" --method "$method" \
      --ratio 0.3 "${train[@]}" --calib-size "$n" --threads "$threads")
    echo "| resnet fixture, --method $method | $n | $s | $((kb / 1024)) |"
  done
done

tv=build/torchvision
if [ ! -f "$tv/resnet18_dyn/resnet18.onnx" ]; then
  /usr/bin/python3 tools/export_torchvision.py --models resnet18 --dynamic-batch --out "$tv/resnet18_dyn" >&2
fi
/usr/bin/python3 -c "
import numpy as np
np.save('$tmp/images.npy', np.random.default_rng(0).standard_normal((64, 3, 224, 224), dtype=np.float32))"
read -r s kb < <(measure "$bin" prune "$tv/resnet18_dyn/resnet18.onnx" -o "$tmp/r18.onnx" \
  --method activation --ratio 0.3 --data "$tmp/images.npy" --calib-size 64 --batch 16 \
  --threads "$threads")
echo "| torchvision ResNet-18 224x224, --method activation | 64 | $s | $((kb / 1024)) |"
