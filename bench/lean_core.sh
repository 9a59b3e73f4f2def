#!/usr/bin/env bash
# Benchmark (not a test) for issue 13, "a lean core": whole-process wall time and peak RSS
# (/usr/bin/time) of
#   convert, data-free prune --ratio 0.5 and prune --target-macs 0.5 (--method l1) on a
#   torchvision ResNet-50 export, and compress on the ResNet fixture (the README's command with a
#   smaller validation range),
# for this build and a baseline build (default: commit c1ef808, the commit before the issue,
# built from `git archive` under build/baseline-c1ef808/). Prints a markdown table of medians
# over RUNS runs with ratios, then checks that both builds wrote byte-identical models.
#   bench/lean_core.sh [--baseline BINARY] [--model RESNET50.onnx] [--runs N] [--compress-runs N]
#                      [--skip-compress]
# Targets (issue 13): prune --ratio 0.5 <= 1.3x convert's time and peak RSS <= 1.5x the file size;
# --target-macs 0.5 <= 1.5x convert; compress >= 2x faster than the baseline, same output.
set -euo pipefail
cd "$(dirname "$0")/.."
baseline_commit=c1ef808
baseline=""
model=/work/tv/resnet50.onnx
runs=3
compress_runs=1
skip_compress=0
while [ $# -gt 0 ]; do
  case $1 in
    --baseline) baseline=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --compress-runs) compress_runs=$2; shift 2 ;;
    --skip-compress) skip_compress=1; shift ;;
    *) echo "usage: $0 [--baseline BINARY] [--model M.onnx] [--runs N] [--skip-compress]" >&2; exit 2 ;;
  esac
done
bin=build/nncompress
[ -x "$bin" ] || { echo "build first: cmake --build build --target nncompress" >&2; exit 2; }
[ -f "$model" ] || { echo "no $model (tools/export_torchvision.py --models resnet50)" >&2; exit 2; }
if [ -z "$baseline" ]; then
  dir=build/baseline-$baseline_commit
  baseline=$dir/build/nncompress
  if [ ! -x "$baseline" ]; then
    echo "building $baseline_commit in $dir (once)" >&2
    rm -rf "$dir/src" && mkdir -p "$dir/src"
    git archive "$baseline_commit" | tar -x -C "$dir/src"
    cmake -S "$dir/src" -B "$dir/build" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >/dev/null
    cmake --build "$dir/build" -j2 --target nncompress >&2
  fi
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
file_bytes=$(stat -c %s "$model")
fm=/usr/share/datasets/fashion-mnist
compress_args=(models/resnet.onnx --data "$fm/train-images-idx3-ubyte.gz"
  --labels "$fm/train-labels-idx1-ubyte.gz" --data-range 50000:52000
  --calib "$fm/train-images-idx3-ubyte.gz" --calib-range 0:50000 --mean 0.2860 --std 0.3530
  --max-accuracy-drop 1.0 --target-size 8x)

# measure BUILD NAME OUT CMD...: appends "seconds kb" per run to $tmp/BUILD.NAME; keeps OUT.
measure() {
  local build=$1 name=$2 out=$3
  shift 3
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e %M %U %S" -o "$tmp/time" "$@" -o "$tmp/$build.$out" >/dev/null 2>"$tmp/err" ||
      { echo "$build $name failed:" >&2; cat "$tmp/err" >&2; exit 1; }
    cat "$tmp/time" >>"$tmp/$build.$name"
  done
}
for build in new base; do
  b=$bin
  [ "$build" = base ] && b=$baseline
  measure "$build" convert convert.onnx "$b" -q convert "$model"
  measure "$build" ratio ratio.onnx "$b" -q prune "$model" --ratio 0.5 --method l1
  measure "$build" macs macs.onnx "$b" -q prune "$model" --target-macs 0.5 --method l1
  [ "$skip_compress" = 1 ] || runs=$compress_runs measure "$build" compress compress.onnx "$b" -q \
    compress "${compress_args[@]}"
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
seconds() { cut -d' ' -f1 "$tmp/$1" | median; }
cpu_seconds() { awk '{print $3 + $4}' "$tmp/$1" | median; }
peak_kb() { cut -d' ' -f2 "$tmp/$1" | sort -n | tail -1; }
row() {
  local name=$1 label=$2
  awk -v l="$label" -v s="$(seconds "new.$name")" -v kb="$(peak_kb "new.$name")" \
    -v bs="$(seconds "base.$name")" -v bkb="$(peak_kb "base.$name")" \
    -v c="$(seconds new.convert)" -v bc="$(seconds base.convert)" -v fb="$file_bytes" \
    -v u="$(cpu_seconds "new.$name")" -v bu="$(cpu_seconds "base.$name")" \
    -v uc="$(cpu_seconds new.convert)" -v buc="$(cpu_seconds base.convert)" \
    -v rss_rel="$3" 'BEGIN {
    rel = rss_rel ? sprintf("%.2fx / %.2fx", kb * 1024 / fb, bkb * 1024 / fb) : "-"
    printf "| %s | %.2f | %.2f | %.2fx | %.2fx / %.2fx | %.2f / %.2f | %.2fx / %.2fx | %.0f / %.0f | %s |\n",
      l, s, bs, bs / s, s / c, bs / bc, u, bu, u / uc, bu / buc, kb / 1024, bkb / 1024, rel }'
}
/usr/bin/python3 tools/doc_stamp.py --binary "$bin"
echo
echo "Model: $model ($(awk -v b="$file_bytes" 'BEGIN{printf "%.1f MB", b/1e6}')); baseline:" \
  "$baseline; $runs runs each (median s, max RSS), $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| command | new s | baseline s | speed-up | wall vs convert (new / base) | CPU s user+sys (new / base) | CPU vs convert (new / base) | peak RSS MiB (new / base) | RSS / file size (new / base) |"
echo "|---|---|---|---|---|---|---|---|---|"
row convert "convert" 1
row ratio "prune --ratio 0.5 --method l1" 1
row macs "prune --target-macs 0.5 --method l1" 1
[ "$skip_compress" = 1 ] || row compress "compress models/resnet.onnx (--data-range 50000:52000)" ""
echo
same=1
for out in convert ratio macs compress; do
  [ -f "$tmp/new.$out.onnx" ] || continue
  if cmp -s "$tmp/new.$out.onnx" "$tmp/base.$out.onnx"; then
    echo "output of $out: byte-identical to the baseline's"
  else
    echo "output of $out: DIFFERS from the baseline's"
    same=0
  fi
done
[ "$same" = 1 ]
