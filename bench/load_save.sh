#!/usr/bin/env bash
# Benchmark (not a test): load+save of a large model by nncompress, beside a plain protobuf
# parse+serialize of the same file, and a load-only `nncompress report`. Prints a markdown table
# of median wall time and peak RSS over RUNS runs, with ratios to the protobuf baseline.
#   bench/load_save.sh [MODEL.onnx] [RUNS]
# Default MODEL: build/torchvision/resnet50.onnx, exported (random weights) by
# tools/export_torchvision.py when missing (needs Debian python3-torch + python3-torchvision).
# Targets: load+save at most 1.5x the baseline's time and peak RSS at most 2.5x the file size
# (issue 2); prune --ratio 0.5 within 2x of load+save, peak RSS at most 2.5x the file size
# (issue 4).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-build/torchvision/resnet50.onnx}
runs=${2:-5}
bin=build/nncompress
baseline=build/nnc_proto_roundtrip
[ -x "$bin" ] && [ -x "$baseline" ] || { echo "build first: cmake --build build" >&2; exit 2; }
if [ ! -f "$model" ]; then
  echo "exporting $model with tools/export_torchvision.py" >&2
  /usr/bin/python3 tools/export_torchvision.py --models "$(basename "$model" .onnx)" --out "$(dirname "$model")" >&2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
file_bytes=$(stat -c %s "$model")

# measure NAME CMD...: appends "seconds kb" per run to $tmp/NAME
measure() {
  local name=$1
  shift
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -o "$tmp/time" "$@" >/dev/null
    cat "$tmp/time" >>"$tmp/$name"
  done
}
measure baseline "$baseline" "$model" "$tmp/out_pb.onnx"
measure loadsave "$bin" -q convert "$model" -o "$tmp/out_nnc.onnx"
measure load "$bin" -q report "$model"
measure prune "$bin" -q prune "$model" -o "$tmp/out_pruned.onnx" --ratio 0.5

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
base_s=$(cut -d' ' -f1 "$tmp/baseline" | median)
row() {
  local name=$1 label=$2
  local s kb
  s=$(cut -d' ' -f1 "$tmp/$name" | median)
  kb=$(cut -d' ' -f2 "$tmp/$name" | sort -n | tail -1)
  awk -v l="$label" -v s="$s" -v kb="$kb" -v b="$base_s" -v fb="$file_bytes" 'BEGIN {
    printf "| %s | %.2f | %.2fx | %.0f | %.2fx |\n", l, s, (b > 0 ? s / b : 0), kb / 1024, kb * 1024 / fb }'
}
/usr/bin/python3 tools/doc_stamp.py --binary "$bin"
echo
echo "Model: $model ($(awk -v b="$file_bytes" 'BEGIN{printf "%.1f MB", b/1e6}')), $runs runs each, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| step | median s | time vs protobuf | peak RSS MiB | RSS / file size |"
echo "|---|---|---|---|---|"
row baseline "protobuf parse + serialize (baseline)"
row loadsave "nncompress convert (load + save)"
row load "nncompress report (load only)"
row prune "nncompress prune --ratio 0.5"
ls_s=$(cut -d' ' -f1 "$tmp/loadsave" | median)
pr_s=$(cut -d' ' -f1 "$tmp/prune" | median)
echo
awk -v p="$pr_s" -v l="$ls_s" 'BEGIN { printf "prune / load+save time: %.2fx\n", (l > 0 ? p / l : 0) }'
cmp -s "$tmp/out_pb.onnx" "$tmp/out_nnc.onnx" && echo && echo "(the two outputs are byte-identical)" || true
