#!/usr/bin/env bash
# Outputs unchanged (issue 13): runs this build and a baseline build with the same options and
# compares the written models byte for byte: prune (data-free and with calibration data, every
# allocation, recovery, steps) and quantize on the fixtures, prune on a torchvision ResNet-50.
# Exit 0 when every pair is identical, 1 otherwise (the differing cases are listed).
#   tools/compare_builds.sh BASELINE_BINARY [--model RESNET50.onnx] [--quick]
# bench/lean_core.sh builds the baseline (commit c1ef808) under build/baseline-c1ef808/.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 BASELINE_BINARY [--model M.onnx] [--quick]" >&2; exit 2; }
baseline=$1
shift
big=/work/tv/resnet50.onnx
quick=0
while [ $# -gt 0 ]; do
  case $1 in
    --model) big=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
bin=build/nncompress
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fm=/usr/share/datasets/fashion-mnist
data=(--data "$fm/train-images-idx3-ubyte.gz" --calib-size 64 --mean 0.2860 --std 0.3530)
calib=(--calib "$fm/train-images-idx3-ubyte.gz" --calib-size 64 --mean 0.2860 --std 0.3530)
same=0
reordered=0
differ=0

# The baseline ordered the initializers surgery adds (weights shared by several layers, shape
# literals) by node address, so its files depend on the heap layout (even on the length of the
# input path). Such a pair counts as equal when sorting the initializers by name makes it so.
same_but_order() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import sys, onnx
a, b = (onnx.load(p) for p in sys.argv[1:3])
for m in (a, b):
    inits = sorted(m.graph.initializer, key=lambda t: t.name)
    del m.graph.initializer[:]
    m.graph.initializer.extend(inits)
sys.exit(0 if a.SerializeToString() == b.SerializeToString() else 1)
PY
}

# check NAME ARGS...: runs both binaries with ARGS plus -o, compares the outputs.
check() {
  local name=$1
  shift
  local status_new=0 status_base=0
  "$bin" -q "$@" -o "$tmp/new.onnx" >"$tmp/new.log" 2>&1 || status_new=$?
  "$baseline" -q "$@" -o "$tmp/base.onnx" >"$tmp/base.log" 2>&1 || status_base=$?
  if [ "$status_new" != "$status_base" ]; then
    echo "DIFFERENT EXIT ($status_new vs baseline $status_base): $name"
    differ=$((differ + 1))
  elif [ "$status_new" != 0 ]; then
    echo "same exit $status_new (no output): $name"
    same=$((same + 1))
  elif cmp -s "$tmp/new.onnx" "$tmp/base.onnx"; then
    echo "identical: $name"
    same=$((same + 1))
  elif same_but_order "$tmp/new.onnx" "$tmp/base.onnx"; then
    echo "identical up to the order of added initializers: $name"
    reordered=$((reordered + 1))
  else
    echo "DIFFERENT: $name"
    differ=$((differ + 1))
  fi
  rm -f "$tmp/new.onnx" "$tmp/base.onnx"
}

for m in models/*.onnx; do
  n=$(basename "$m" .onnx)
  check "$n prune --ratio 0.5 l1" prune "$m" --ratio 0.5 --method l1
  check "$n prune --target-macs 0.5 l2" prune "$m" --target-macs 0.5 --method l2
  check "$n prune --target-params 0.6 fpgm global" prune "$m" --target-params 0.6 --method fpgm \
    --allocation global
  check "$n quantize qdq" quantize "$m" "${calib[@]}"
  [ "$quick" = 1 ] && continue
  check "$n prune --ratio 0.3 activation bn+lsq" prune "$m" --ratio 0.3 --method activation \
    "${data[@]}" --recover bn+lsq
  check "$n prune --target-macs 0.6 sensitivity" prune "$m" --target-macs 0.6 --method l1 \
    --allocation sensitivity "${data[@]}"
  check "$n prune --ratio 0.5 steps 2 lsq" prune "$m" --ratio 0.5 --method l1 --steps 2 \
    --recover lsq "${data[@]}"
  check "$n quantize weights-only 4" quantize "$m" --format weights-only --weight-bits 4
done
if [ -f "$big" ]; then
  check "$(basename "$big") prune --ratio 0.5 l1" prune "$big" --ratio 0.5 --method l1
  check "$(basename "$big") prune --target-macs 0.5 l1" prune "$big" --target-macs 0.5 --method l1
  check "$(basename "$big") prune --target-params 0.5 l2 global" prune "$big" \
    --target-params 0.5 --method l2 --allocation global
fi
echo "$same identical, $reordered identical up to initializer order, $differ different"
[ "$differ" = 0 ]
