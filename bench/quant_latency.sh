#!/usr/bin/env bash
# ONNX Runtime latency (1 thread, batch 1) of float, QDQ and QOperator models for every fixture and
# for torchvision ResNet-18 at 224x224 (random weights). Prints a markdown table (docs/benchmarks.md,
# section "Quantized models in ONNX Runtime").
#   bench/quant_latency.sh [build/nncompress] > table.md
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build/nncompress}
D=/usr/share/datasets/fashion-mnist
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
ITERS=${ITERS:-200}

bench() {  # model shape -> median ms
  node tools/ort/bench.js "$1" --shape "$2" --threads 1 --iters "$ITERS" --warmup 10 |
    /usr/bin/python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["ms_per_run_median"])'
}

quantize() {  # model format out extra-args...
  local model=$1 format=$2 out=$3
  shift 3
  "$BIN" -q quantize "$model" -o "$out" --format "$format" --calib "$D/train-images-idx3-ubyte.gz" \
    --calib-range 0:50000 \
    --sqnr-samples 0 "$@" > /dev/null
}

echo "$(/usr/bin/python3 tools/doc_stamp.py --binary "$BIN") ITERS=$ITERS."
echo
echo "| model | input | float ms | QDQ int8 ms | QOperator int8 ms | QDQ speed-up | QOperator speed-up |"
echo "|---|---|---|---|---|---|---|"
row() {  # name model shape extra-args...
  local name=$1 model=$2 shape=$3
  shift 3
  quantize "$model" qdq "$WORK/$name.qdq.onnx" "$@"
  quantize "$model" qoperator "$WORK/$name.qop.onnx" "$@"
  local f q o
  f=$(bench "$model" "$shape")
  q=$(bench "$WORK/$name.qdq.onnx" "$shape")
  o=$(bench "$WORK/$name.qop.onnx" "$shape")
  /usr/bin/python3 -c "print('| $name | $shape | $f | $q | $o | %.2fx | %.2fx |' % ($f / $q, $f / $o))"
}
for m in vgg_bn resnet mobilenetv2 densenet flatten_head; do
  row "$m" "models/$m.onnx" 1,1,28,28 --mean 0.2860 --std 0.3530 --calib-size 64
done
/usr/bin/python3 tools/export_torchvision.py --models resnet18 --out "$WORK/tv" > /dev/null 2>&1
# Calibration images for ResNet-18: Fashion-MNIST resized to 224x224, grey -> RGB.
row resnet18 "$WORK/tv/resnet18.onnx" 1,3,224,224 --size 224x224 --channels rgb --mean 0.2860 --std 0.3530 --calib-size 16
