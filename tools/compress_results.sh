#!/usr/bin/env bash
# Runs `nncompress compress` on every fixture (accuracy demand and size demand as given), then
# checks each result independently on the 10k Fashion-MNIST test set with `nncompress eval` and
# with ONNX Runtime (tools/ort_accuracy.py), and writes the table to docs/compress-results.md.
# compress decides on training images only: it measures accuracy on the last 10k training images
# (--data-range 50000:60000) and calibrates on the first 50k (--calib-range 0:50000); the test
# set is read once per model, for the reported accuracy.
#
#   tools/compress_results.sh [MAX_DROP_POINTS] [TARGET_SIZE] [FIXTURES...]
#   defaults: 1.0 8x vgg_bn resnet mobilenetv2 densenet flatten_head
# ARGS adds compress flags and DOC names the output (default docs/compress-results.md), e.g.
#   ARGS="--finetune 4 --qat" DOC=docs/compress-finetune-results.md \
#     tools/compress_results.sh 1.0 16x resnet
# Needs a Release build in build/ and node_modules (tools/bootstrap.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
drop=${1:-1.0}
size=${2:-8x}
shift $(($# > 2 ? 2 : $#)) || true
fixtures=("$@")
[ ${#fixtures[@]} -gt 0 ] || fixtures=(vgg_bn resnet mobilenetv2 densenet flatten_head)
bin=build/nncompress
data=/usr/share/datasets/fashion-mnist
out=build/compress-results${DOC:+-$(basename "$DOC" .md)}
mkdir -p "$out"
pre=(--mean 0.2860 --std 0.3530)
read -r -a extra <<<"${ARGS:-}"
doc=${DOC:-docs/compress-results.md}

rows=()
for f in "${fixtures[@]}"; do
  model=models/$f.onnx
  result=$out/$f.onnx
  rm -f "$result"
  start=$(date +%s)
  set +e
  "$bin" -q compress "$model" -o "$result" --data $data/train-images-idx3-ubyte.gz \
    --labels $data/train-labels-idx1-ubyte.gz --data-range 50000:60000 \
    --calib $data/train-images-idx3-ubyte.gz --calib-range 0:50000 "${pre[@]}" \
    --max-accuracy-drop "$drop" --target-size "$size" ${extra[@]+"${extra[@]}"} --keep-best --json \
    --save-recipe "$out/$f.recipe.json" --report "$out/$f.html" >"$out/$f.json"
  code=$?
  set -e
  seconds=$(($(date +%s) - start))
  if [ ! -f "$result" ]; then
    rows+=("| $f | exit $code | - | - | - | - | - | $seconds |")
    continue
  fi
  before=$(stat -c %s "$model")
  after=$(stat -c %s "$result")
  ours=$("$bin" -q eval "$result" --data $data/t10k-images-idx3-ubyte.gz \
    --labels $data/t10k-labels-idx1-ubyte.gz "${pre[@]}" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["top1"])')
  base=$("$bin" -q eval "$model" --data $data/t10k-images-idx3-ubyte.gz \
    --labels $data/t10k-labels-idx1-ubyte.gz "${pre[@]}" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["top1"])')
  ort=$(/usr/bin/python3 tools/ort_accuracy.py "$result" | python3 -c 'import json,sys; print(json.load(sys.stdin)["top1"])')
  rows+=("$(python3 - "$f" "$code" "$before" "$after" "$base" "$ours" "$ort" "$seconds" <<'EOF'
import sys
f, code, before, after, base, ours, ort, seconds = sys.argv[1:]
before, after = int(before), int(after)
base, ours, ort = float(base), float(ours), float(ort)
print(f"| {f} | {code} | {before/1024:.1f} KiB -> {after/1024:.1f} KiB | {before/after:.1f}x "
      f"| {100*base:.2f} | {100*ours:.2f} ({100*(base-ours):+.2f}) | {100*ort:.2f} ({100*(base-ort):+.2f}) "
      f"| {float(seconds):.0f} |")
EOF
)")
done

# Before the doc is truncated: the stamp's dirty flag looks at tracked files.
stamp=$(/usr/bin/python3 tools/doc_stamp.py --binary "$bin")
ort=$(/usr/bin/python3 tools/doc_stamp.py --ort-version)
{
  echo "# compress results"
  echo
  echo "Written by \`${ARGS:+ARGS=\"$ARGS\" }${DOC:+DOC=$DOC }tools/compress_results.sh $drop $size ${fixtures[*]}\`"
  echo "($(nproc) cores, load average at the"
  echo "end: $(cut -d' ' -f1-3 /proc/loadavg)). $stamp"
  echo "Demand: at most $drop points of top-1 accuracy lost on held-out validation images (the last"
  echo "10k Fashion-MNIST training images, \`--data train-images... --labels train-labels..."
  echo "--data-range 50000:60000\`), file size at most the original / ${size%x} (target \`$size\`)."
  echo "Calibration: the first 50k training images (\`--calib-range 0:50000\`). \`compress\` never"
  echo "sees the test set: the accuracy below is measured once, on the 10k test set, on the written"
  echo "file by \`nncompress eval\` and by ONNX Runtime $ort."
  echo "The fixtures were trained on all 60k training images (models/README.md), so the validation"
  echo "images are not unseen by the float model: the drop measured there can differ from the test drop."
  echo "Exit 1 means the targets were not both met (the closest model is written with --keep-best)."
  echo
  echo "| fixture | exit | size | smaller | float top-1 % | ours top-1 % (drop) | ORT top-1 % (drop) | seconds |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} > "$doc"
cat "$doc"
