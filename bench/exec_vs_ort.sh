#!/usr/bin/env bash
# Benchmark (not a test): nncompress's CPU executor against ONNX Runtime on the same models in the
# same run, 1 and 2 threads, batch 1 and 8. Prints a markdown table of images/s and the ratio
# (ours / ORT). Models: the fixtures in models/ and torchvision ResNet-18 at 224x224 (random
# weights, dynamic batch; exported by tools/export_torchvision.py when missing). Each cell runs
# ours and ORT alternately REPEATS times and reports the medians (the ratio is the median of the
# per-repeat ratios), so a burst of load from other processes hits both sides alike.
# Both sides are measured with the same statistic: batch / median wall time of one run (ORT:
# tools/ort/bench.js; ours: `eval --json` batch_ms_median, the executor run without data reading).
# A median drops the runs during which another process had the core, which a total-time
# throughput does not. The last column is eval's own throughput (total time, data reading
# included) for reference.
# Then peak RSS of `nncompress eval` over 1,000 and over 10,000 Fashion-MNIST test images.
#   bench/exec_vs_ort.sh [SECONDS_PER_CELL] [REPEATS]
#   (NNC_BIN=build-native/nncompress for a -march=native build)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-2}
repeats=${2:-3}
bin=${NNC_BIN:-build/nncompress}
[ -x "$bin" ] || { echo "build first: cmake --build build" >&2; exit 2; }
tv=build/torchvision
if [ ! -f "$tv/resnet18_dyn/resnet18.onnx" ]; then
  /usr/bin/python3 tools/export_torchvision.py --models resnet18 --dynamic-batch --out "$tv/resnet18_dyn" >&2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
field() { /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

declare -a models=(models/vgg_bn.onnx models/resnet.onnx models/mobilenetv2.onnx models/densenet.onnx
  models/flatten_head.onnx "$tv/resnet18_dyn/resnet18.onnx")

/usr/bin/python3 tools/doc_stamp.py --binary "$bin"
echo
echo "Load average at start: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; $repeats repeats per cell"
echo
echo "| model | threads | batch | nncompress img/s | ONNX Runtime img/s | ratio | nncompress eval throughput img/s |"
echo "|---|---|---|---|---|---|---|"
for m in "${models[@]}"; do
  if [[ $m == *resnet18* ]]; then sample="3,224,224"; else sample="1,28,28"; fi
  for threads in 1 2; do
    for batch in 1 8; do
      ours_all=() ort_all=() thr_all=()
      for ((r = 0; r < repeats; ++r)); do
        ort_ips=$(node tools/ort/bench.js "$m" --shape "$batch,$sample" --threads "$threads" \
          --iters $((batch == 1 ? 40 : 10)) --warmup 3 | field images_per_second)
        # Enough random samples for about SECONDS_PER_CELL of work at ORT's speed.
        if ((r == 0)); then
          count=$(/usr/bin/python3 -c "print(max($batch * 4, int($ort_ips * $secs) // $batch * $batch))")
          /usr/bin/python3 -c "
import numpy as np
np.save('$tmp/x.npy', np.random.default_rng(0).standard_normal(($count,) + tuple(int(v) for v in '$sample'.split(',')), dtype=np.float32))"
        fi
        "$bin" -q eval "$m" --data "$tmp/x.npy" --batch "$batch" --threads "$threads" --json >"$tmp/eval.json"
        ours_ips=$(/usr/bin/python3 -c "
import json; j = json.load(open('$tmp/eval.json')); print($batch * 1000 / j['batch_ms_median'])")
        ours_all+=("$ours_ips") ort_all+=("$ort_ips") thr_all+=("$(field images_per_second <"$tmp/eval.json")")
      done
      /usr/bin/python3 -c "
import statistics as s
ours = [$(IFS=,; echo "${ours_all[*]}")]; ort = [$(IFS=,; echo "${ort_all[*]}")]
thr = [$(IFS=,; echo "${thr_all[*]}")]
ratio = s.median(o / r for o, r in zip(ours, ort))
print(f'| $(basename "$m") | $threads | $batch | {s.median(ours):.1f} | {s.median(ort):.1f} | {ratio:.2f}x | {s.median(thr):.1f} |')"
    done
  done
done
echo "Load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

# Peak RSS must stay flat (within 10%) between 1,000 and 10,000 images: batches are streamed and
# intermediates freed or reused, nothing grows with the number of images.
fm=/usr/share/datasets/fashion-mnist
echo
echo "| model | peak RSS MiB, 1,000 images | peak RSS MiB, 10,000 images | growth |"
echo "|---|---|---|---|"
for m in models/resnet.onnx models/densenet.onnx; do
  rss=()
  for limit in 1000 10000; do
    /usr/bin/time -f %M -o "$tmp/rss" "$bin" -q eval "$m" --data "$fm/t10k-images-idx3-ubyte.gz" \
      --labels "$fm/t10k-labels-idx1-ubyte.gz" --mean 0.2860 --std 0.3530 --batch 8 --limit "$limit" \
      --json >/dev/null
    rss+=("$(tail -1 "$tmp/rss")")
  done
  /usr/bin/python3 -c "
a, b = ${rss[0]}, ${rss[1]}
print(f'| $(basename "$m") | {a / 1024:.1f} | {b / 1024:.1f} | {100 * (b - a) / a:+.1f}% |')"
done
