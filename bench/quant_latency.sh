#!/usr/bin/env bash
# ONNX Runtime latency (CPU, 1 intra-op thread, batch 1, graph optimizations on) of each model in
# float32 and as int8 from `nncompress quantize`: QDQ with --qdq-placement ort (the default), QDQ
# with --qdq-placement tensorrt (Q/DQ on layer inputs only), QOperator and weights-only (int8
# weights, float activations). Rows: every fixture and
# torchvision ResNet-18, ResNet-50 and MobileNetV2 at 224x224 (random weights; from $TV_DIR, or
# exported with tools/export_torchvision.py when missing). Prints a stamped markdown table
# (docs/quant-latency.md holds its output).
#   bench/quant_latency.sh [build/nncompress] > table.md
# ITERS runs per measurement (default 50), ROUNDS round-robin passes over the five variants of a
# model (default 3): each cell is the median of the per-pass medians, so a burst of load from
# other processes hits all variants of a row alike. MODELS limits the rows (e.g. "resnet resnet18").
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build/nncompress}
D=/usr/share/datasets/fashion-mnist
TV_DIR=${TV_DIR:-/work/tv}
ITERS=${ITERS:-50}
ROUNDS=${ROUNDS:-3}
MODELS=${MODELS:-"vgg_bn resnet mobilenetv2 densenet flatten_head resnet18 resnet50 mobilenet_v2"}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

bench() {  # model shape -> median ms
  node tools/ort/bench.js "$1" --shape "$2" --threads 1 --iters "$ITERS" --warmup 5 |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["ms_per_run_median"])'
}

quantize() {  # model out args...
  local model=$1 out=$2
  shift 2
  "$BIN" -q quantize "$model" -o "$out" --calib "$D/train-images-idx3-ubyte.gz" \
    --calib-range 0:50000 --sqnr-samples 0 "$@" > /dev/null
}

torchvision_model() {  # name -> path of its ONNX export
  if [ -f "$TV_DIR/$1.onnx" ]; then
    echo "$TV_DIR/$1.onnx"
  else
    /usr/bin/python3 tools/export_torchvision.py --models "$1" --out "$WORK/tv" > /dev/null 2>&1
    echo "$WORK/tv/$1.onnx"
  fi
}

echo "$(/usr/bin/python3 tools/doc_stamp.py --binary "$BIN") ITERS=$ITERS, ROUNDS=$ROUNDS."
echo
echo "| model | input | fp32 ms | QDQ ort ms | QDQ tensorrt ms | QOperator ms | weights-only ms |" \
  "QDQ ort vs fp32 | QDQ tensorrt vs fp32 | QOperator vs fp32 | weights-only vs fp32 |" \
  "QDQ ort vs QOperator |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
row() {  # name model shape quantize-args...
  local name=$1 model=$2 shape=$3
  shift 3
  quantize "$model" "$WORK/$name.ort.onnx" --format qdq --qdq-placement ort "$@"
  quantize "$model" "$WORK/$name.trt.onnx" --format qdq --qdq-placement tensorrt "$@"
  quantize "$model" "$WORK/$name.qop.onnx" --format qoperator "$@"
  quantize "$model" "$WORK/$name.wo.onnx" --format weights-only "$@"
  local variants=("$model" "$WORK/$name.ort.onnx" "$WORK/$name.trt.onnx" "$WORK/$name.qop.onnx"
    "$WORK/$name.wo.onnx")
  local times="" r v
  for ((r = 0; r < ROUNDS; r++)); do
    for v in "${variants[@]}"; do times="$times $(bench "$v" "$shape")"; done
  done
  /usr/bin/python3 - "$name" "$shape" "$ROUNDS" $times <<'EOF'
import statistics, sys
name, shape, rounds, times = sys.argv[1], sys.argv[2], int(sys.argv[3]), list(map(float, sys.argv[4:]))
f, o, t, q, w = (statistics.median(times[i::5]) for i in range(5))
print(f"| {name} | {shape} | {f:.3f} | {o:.3f} | {t:.3f} | {q:.3f} | {w:.3f} | "
      f"{f / o:.2f}x | {f / t:.2f}x | {f / q:.2f}x | {f / w:.2f}x | {q / o:.2f}x |")
EOF
}
for m in $MODELS; do
  case $m in
    resnet18 | resnet50 | mobilenet_v2)
      # Calibration: Fashion-MNIST resized to 224x224 RGB, 16 images: the weights are random,
      # so these ranges only need to be plausible; latency does not depend on them.
      row "$m" "$(torchvision_model "$m")" 1,3,224,224 --size 224x224 --channels rgb \
        --mean 0.2860 --std 0.3530 --calib-size 16
      ;;
    *)
      row "$m" "models/$m.onnx" 1,1,28,28 --mean 0.2860 --std 0.3530 --calib-size 64
      ;;
  esac
done
