#!/usr/bin/env bash
# Benchmark (not a test): nncompress's CPU executor against ONNX Runtime on the same models in the
# same run, 1 and 2 threads, batch 1 and 8. Prints a markdown table of images/s and the ratio
# (ours / ORT). Models: the fixtures in models/ and torchvision ResNet-18 at 224x224 (random
# weights, dynamic batch; exported by tools/export_torchvision.py when missing).
#   bench/exec_vs_ort.sh [SECONDS_PER_CELL]      (NNC_BIN=build-native/nncompress for a -march=native build)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-3}
bin=${NNC_BIN:-build/nncompress}
[ -x "$bin" ] || { echo "build first: cmake --build build" >&2; exit 2; }
tv=build/torchvision
if [ ! -f "$tv/resnet18_dyn/resnet18.onnx" ]; then
  /usr/bin/python3 tools/export_torchvision.py --models resnet18 --dynamic-batch --out "$tv/resnet18_dyn" >&2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

declare -a models=(models/vgg_bn.onnx models/resnet.onnx models/mobilenetv2.onnx models/densenet.onnx
  models/flatten_head.onnx "$tv/resnet18_dyn/resnet18.onnx")

echo "| model | threads | batch | nncompress img/s | ONNX Runtime img/s | ratio |"
echo "|---|---|---|---|---|---|"
for m in "${models[@]}"; do
  if [[ $m == *resnet18* ]]; then sample="3,224,224"; else sample="1,28,28"; fi
  for threads in 1 2; do
    for batch in 1 8; do
      # Enough random samples for about SECONDS_PER_CELL of work at ORT's speed.
      ort=$(node tools/ort/bench.js "$m" --shape "$batch,$sample" --threads "$threads" --iters 10 --warmup 2)
      ort_ips=$(echo "$ort" | /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['images_per_second'])")
      count=$(/usr/bin/python3 -c "print(max($batch * 4, int($ort_ips * $secs) // $batch * $batch))")
      /usr/bin/python3 -c "
import numpy as np
np.save('$tmp/x.npy', np.random.default_rng(0).standard_normal(($count,) + tuple(int(v) for v in '$sample'.split(',')), dtype=np.float32))"
      ours=$("$bin" -q eval "$m" --data "$tmp/x.npy" --batch "$batch" --threads "$threads" --json)
      ours_ips=$(echo "$ours" | /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['images_per_second'])")
      /usr/bin/python3 -c "print(f'| $(basename "$m") | $threads | $batch | {$ours_ips:.1f} | {$ort_ips:.1f} | {$ours_ips / $ort_ips:.2f}x |')"
    done
  done
done
