#!/usr/bin/env python3
"""Quantization results on the fixtures: accuracy (10k test set), file size and output SQNR for
each format / calibration method, by calling the nncompress CLI. Calibration uses the TRAIN set.
Writes a markdown table to stdout (docs/quantize.md includes its output).

usage: /usr/bin/python3 tools/quant_results.py [--binary build/nncompress] [--out results.md]
"""
import argparse, json, os, subprocess, sys, tempfile

D = "/usr/share/datasets/fashion-mnist"
NORM = ["--mean", "0.2860", "--std", "0.3530"]
FIXTURES = ["vgg_bn", "resnet", "mobilenetv2", "densenet", "flatten_head"]
CONFIGS = [  # (label, quantize args)
    ("qdq int8 minmax", ["--format", "qdq", "--calib-method", "minmax"]),
    ("qdq int8 percentile", ["--format", "qdq", "--calib-method", "percentile"]),
    ("qdq int8 entropy", ["--format", "qdq", "--calib-method", "entropy"]),
    ("qdq int8 mse", ["--format", "qdq", "--calib-method", "mse"]),
    ("qdq int8 per-tensor minmax", ["--format", "qdq", "--per-tensor", "--calib-method", "minmax"]),
    ("weights-only int8", ["--format", "weights-only"]),
    ("weights-only int4", ["--format", "weights-only", "--weight-bits", "4"]),
    ("qdq int4 w + int8 act (best of minmax/percentile)", None),
]
BEST_OF = ["qdq int8 minmax", "qdq int8 percentile", "qdq int8 entropy"]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr}")
    return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="build/nncompress")
    ap.add_argument("--calib-size", default="512")
    ap.add_argument("--out")
    a = ap.parse_args()
    fixtures = json.load(open("models/fixtures.json"))
    base_top1 = {f["name"]: f["top1"] for f in fixtures}
    tmp = tempfile.mkdtemp()
    calib = ["--calib", f"{D}/train-images-idx3-ubyte.gz", "--calib-size", a.calib_size] + NORM

    def evaluate(path):
        return run([a.binary, "-q", "eval", path, "--data", f"{D}/t10k-images-idx3-ubyte.gz",
                    "--labels", f"{D}/t10k-labels-idx1-ubyte.gz", *NORM, "--json"])["top1"]

    lines = ["| fixture | configuration | top-1 | drop (points) | file bytes | % of float | output SQNR dB |",
             "|---|---|---|---|---|---|---|"]
    summary = ["| fixture | float top-1 | best int8 QDQ method | its top-1 | drop (points) | % of float file |",
               "|---|---|---|---|---|---|"]
    for name in FIXTURES:
        model = f"models/{name}.onnx"
        float_top1 = evaluate(model)
        results = {}
        for label, args in CONFIGS:
            if args is None:
                args = ["--format", "qdq", "--weight-bits", "4"]
                best = max(("minmax", "percentile"), key=lambda m: results[f"qdq int8 {m}"][0])
                args += ["--calib-method", best]
            out = os.path.join(tmp, f"{name}_{len(results)}.onnx")
            needs_calib = "weights-only" not in args
            j = run([a.binary, "-q", "quantize", model, "-o", out, *args,
                     *(calib if needs_calib else []), "--json"])
            top1 = evaluate(out)
            results[label] = (top1, j["after"]["file_bytes"], j["before"]["file_bytes"],
                              j.get("output_sqnr_db"))
            sq = j.get("output_sqnr_db")
            lines.append(f"| {name} | {label} | {top1:.4f} | {100 * (float_top1 - top1):+.2f} | "
                         f"{j['after']['file_bytes']} | "
                         f"{100 * j['after']['file_bytes'] / j['before']['file_bytes']:.1f}% | "
                         f"{sq if sq is None or isinstance(sq, str) else round(sq, 1)} |")
            print(lines[-1], file=sys.stderr)
        best = max(BEST_OF, key=lambda k: results[k][0])
        t, fb, b, _ = results[best]
        summary.append(f"| {name} | {float_top1:.4f} | {best.split()[-1]} | {t:.4f} | "
                       f"{100 * (float_top1 - t):+.2f} | {100 * fb / b:.1f}% |")
    text = ("Float top-1 measured by our executor (fixtures.json: " +
            ", ".join(f"{k} {v}" for k, v in base_top1.items()) + ").\n\n" +
            "\n".join(summary) + "\n\n" + "\n".join(lines) + "\n")
    if a.out:
        open(a.out, "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
