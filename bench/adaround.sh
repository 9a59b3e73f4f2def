#!/usr/bin/env bash
# Benchmark (not a test) for issue 14: AdaRound (--rounding adaround) on int4 weights + int8
# activations, against nearest and balanced rounding (the default). For the resnet and mobilenetv2
# fixtures: wall time and
# peak RSS of `quantize` on THREADS threads (the done-when: <= 5 minutes on 2 cores), and top-1 on
# the 10k Fashion-MNIST test set in ONNX Runtime (tools/ort_accuracy.py). Calibration: the first
# 512 training images (percentile), the method tools/quant_results.py picks for int4 on resnet.
# Then `compress --no-prune --target-size 5x` of resnet (the least sensitive layers at 4 bits,
# chosen on 2000 test images) with --rounding balanced and adaround (the default): the written
# model's top-1 on all 10k in ONNX Runtime. Prints markdown tables.   bench/adaround.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
bin=${NNC_BIN:-build/nncompress}
[ -x "$bin" ] || { echo "build first: cmake --build build --target nncompress" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
calib=(--calib /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz --calib-range 0:50000
  --calib-size 512 --mean 0.2860 --std 0.3530 --calib-method percentile)

measure() {  # prints "seconds peak_kb"
  /usr/bin/time -f "%e %M" -o "$tmp/time" "$@" >/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
  cat "$tmp/time"
}
top1() { /usr/bin/python3 tools/ort_accuracy.py "$1" | sed 's/.*"top1": \([0-9.]*\).*/\1/'; }

/usr/bin/python3 tools/doc_stamp.py --binary "$bin"
echo
echo "| fixture | float top-1 | rounding | int4 w + int8 act top-1 | drop (points) | quantize wall s ($threads threads) | peak RSS MiB |"
echo "|---|---|---|---|---|---|---|"
for m in resnet mobilenetv2; do
  base=$(top1 "models/$m.onnx")
  for r in nearest balanced adaround; do
    read -r s kb < <(measure "$bin" quantize "models/$m.onnx" -o "$tmp/q.onnx" --weight-bits 4 \
      --rounding "$r" "${calib[@]}" --threads "$threads")
    acc=$(top1 "$tmp/q.onnx")
    drop=$(/usr/bin/python3 -c "print('%+.2f' % (100 * ($base - $acc)))")
    echo "| $m | $base | $r | $acc | $drop | $s | $((kb / 1024)) |"
  done
done

echo
echo "| fixture | compress --target-size 5x, rounding of the 4-bit layers | adaround layers | top-1 (10k, ORT) | drop (points) | compress wall s |"
echo "|---|---|---|---|---|---|"
data=/usr/share/datasets/fashion-mnist
base=$(top1 models/resnet.onnx)
for r in balanced adaround; do
  /usr/bin/time -f "%e" -o "$tmp/time" "$bin" compress models/resnet.onnx -o "$tmp/c.onnx" \
    --no-prune --target-size 5x --max-accuracy-drop 1 --rounding "$r" \
    --data "$data/t10k-images-idx3-ubyte.gz" --labels "$data/t10k-labels-idx1-ubyte.gz" \
    --eval-size 2000 --calib "$data/train-images-idx3-ubyte.gz" --calib-size 512 \
    --mean 0.2860 --std 0.3530 --threads "$threads" --json >"$tmp/c.json" 2>"$tmp/err" ||
    { cat "$tmp/err" >&2; exit 1; }
  layers=$(/usr/bin/python3 -c "import json; print(json.load(open('$tmp/c.json'))['adaround_layers'])")
  acc=$(top1 "$tmp/c.onnx")
  drop=$(/usr/bin/python3 -c "print('%+.2f' % (100 * ($base - $acc)))")
  echo "| resnet | $r | $layers | $acc | $drop | $(cat "$tmp/time") |"
done
