#!/usr/bin/env python3
"""Quantization results on the fixtures: accuracy (10k test set), file size and output SQNR for
each format / calibration method, by calling the nncompress CLI. Decisions use training images
only: calibration the first 50k (--calib-range 0:50000), the choice of the best calibration method
(for the QOperator and int4 rows) the top-1 on the last 10k (validation); the test set is read
only for the reported accuracy.
Writes a markdown table to stdout (docs/quantize.md includes its output).

usage: /usr/bin/python3 tools/quant_results.py [--binary build/nncompress] [--out results.md]
"""
import argparse, json, os, subprocess, sys, tempfile

from doc_stamp import ort_version, stamp  # same folder

D = "/usr/share/datasets/fashion-mnist"
NORM = ["--mean", "0.2860", "--std", "0.3530"]
FIXTURES = ["vgg_bn", "resnet", "mobilenetv2", "densenet", "flatten_head", "preact_densenet"]
CONFIGS = [  # (label, quantize args, evaluate accuracy); args None: built from the results above
    ("qdq int8 minmax", ["--format", "qdq", "--calib-method", "minmax"], True),
    ("qdq int8 percentile", ["--format", "qdq", "--calib-method", "percentile"], True),
    ("qdq int8 entropy", ["--format", "qdq", "--calib-method", "entropy"], True),
    ("qoperator int8 (best qdq method)", None, True),
    ("weights-only int4", ["--format", "weights-only", "--weight-bits", "4"], True),
    ("qdq int4 w + int8 act (best qdq method)", None, "resnet"),
    # Cross-layer equalisation on the depthwise-separable fixture.
    ("qdq int8 minmax + equalize", ["--format", "qdq", "--calib-method", "minmax", "--equalize"],
     "mobilenetv2"),
    ("qdq int8 percentile + equalize", ["--format", "qdq", "--calib-method", "percentile",
                                        "--equalize"], "mobilenetv2"),
    ("qdq int8 per-tensor minmax", ["--format", "qdq", "--per-tensor", "--calib-method", "minmax"],
     "mobilenetv2"),
    ("qdq int8 per-tensor minmax + equalize", ["--format", "qdq", "--per-tensor", "--calib-method",
                                               "minmax", "--equalize"], "mobilenetv2"),
]
# Slower extras (--all): MSE, per-tensor, weight-only int8, bias correction.
EXTRA = [
    ("qdq int8 mse", ["--format", "qdq", "--calib-method", "mse"], True),
    ("qdq int8 per-tensor minmax", ["--format", "qdq", "--per-tensor", "--calib-method", "minmax"],
     True),
    ("weights-only int8", ["--format", "weights-only"], True),
    ("weights-only int4 + bias correction", ["--format", "weights-only", "--weight-bits", "4",
                                             "--bias-correction"], True),
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
    ap.add_argument("--all", action="store_true", help="also the EXTRA configurations")
    ap.add_argument("--fixtures", default=",".join(FIXTURES))
    a = ap.parse_args()
    fixtures = json.load(open("models/fixtures.json"))
    # Calibration: the first --calib-size TRAIN images; accuracy: the 10k TEST set.
    base_top1 = {f["name"]: f["top1"] for f in fixtures}
    tmp = tempfile.mkdtemp()
    calib = ["--calib", f"{D}/train-images-idx3-ubyte.gz", "--calib-range", "0:50000",
             "--calib-size", a.calib_size] + NORM

    # Top-1 in ONNX Runtime (1 thread), the runtime users deploy with: our executor needs minutes
    # per 10k-image pass on a loaded 2-core machine, ORT seconds. The preprocessed test set and
    # validation set (the last 10k training images) are written once as .npy.
    import numpy as np
    from ort_accuracy import idx
    labels = {}
    for split, prefix, rows in (("test", "t10k", slice(None)), ("val", "train", slice(50000, None))):
        images = idx(f"{D}/{prefix}-images-idx3-ubyte.gz")[rows].reshape(-1, 1, 28, 28)
        labels[split] = idx(f"{D}/{prefix}-labels-idx1-ubyte.gz")[rows].astype(np.int64)
        x = ((images.astype(np.float32) / 255.0 - 0.2860) / 0.3530).astype(np.float32)
        np.save(os.path.join(tmp, f"{split}.npy"), x)

    def evaluate(path, split="test"):
        out_dir = os.path.join(tmp, "out")
        r = subprocess.run(["node", "tools/ort/run.js", path, "--input",
                            "input=" + os.path.join(tmp, f"{split}.npy"), "--out-dir", out_dir],
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"onnxruntime failed on {path}: {r.stderr}")
        logits = np.load(json.loads(r.stdout)["outputs"][0]["file"])
        return float((logits.argmax(1) == labels[split]).mean())

    lines = ["| fixture | configuration | top-1 | drop (points) | file bytes | % of float | output SQNR dB |",
             "|---|---|---|---|---|---|---|"]
    summary = ["| fixture | float top-1 | best int8 QDQ method (on validation) | its top-1 | drop (points) | % of float file |",
               "|---|---|---|---|---|---|"]
    for name in a.fixtures.split(","):
        model = f"models/{name}.onnx"
        float_top1 = evaluate(model)
        results, val_top1 = {}, {}
        for label, args, do_eval in CONFIGS + (EXTRA if a.all else []):
            if do_eval not in (True, False) and do_eval != name:
                continue
            if args is None:  # the method chosen on validation images, never on the test set
                best = max(BEST_OF, key=lambda k: val_top1[k]).split()[-1]
                args = (["--format", "qoperator"] if label.startswith("qoperator") else
                        ["--format", "qdq", "--weight-bits", "4"]) + ["--calib-method", best]
            out = os.path.join(tmp, f"{name}_{len(results)}.onnx")
            needs_calib = "weights-only" not in args or "--bias-correction" in args
            j = run([a.binary, "-q", "quantize", model, "-o", out, *args,
                     *(calib if needs_calib else []), "--json"])
            top1 = evaluate(out) if do_eval else None
            if label in BEST_OF:
                val_top1[label] = evaluate(out, "val")
            results[label] = (top1, j["after"]["file_bytes"], j["before"]["file_bytes"],
                              j.get("output_sqnr_db"))
            sq = j.get("output_sqnr_db")
            acc = "-" if top1 is None else f"{top1:.4f}"
            drop = "-" if top1 is None else f"{100 * (float_top1 - top1):+.2f}"
            lines.append(f"| {name} | {label} | {acc} | {drop} | "
                         f"{j['after']['file_bytes']} | "
                         f"{100 * j['after']['file_bytes'] / j['before']['file_bytes']:.1f}% | "
                         f"{sq if sq is None or isinstance(sq, str) else round(sq, 1)} |")
            print(lines[-1], file=sys.stderr)
        best = max(BEST_OF, key=lambda k: val_top1[k])
        t, fb, b, _ = results[best]
        summary.append(f"| {name} | {float_top1:.4f} | {best.split()[-1]} | {t:.4f} | "
                       f"{100 * (float_top1 - t):+.2f} | {100 * fb / b:.1f}% |")
    text = ("Float top-1 in fixtures.json (PyTorch): " +
            ", ".join(f"{k} {v}" for k, v in base_top1.items()) + ".\n\n" +
            f"Generated by `tools/quant_results.py`. {stamp(a.binary)} Calibration: first {a.calib_size} "
            "TRAIN images (`--calib-range 0:50000`); best calibration method chosen by top-1 on the "
            "last 10k TRAIN images (validation; the fixtures were trained on them, see "
            "models/README.md); "
            f"top-1 on the 10k TEST set in ONNX Runtime {ort_version()} (1 thread); "
            "float top-1 measured the same way; output SQNR: logits against the float model on the "
            "first 256 calibration images; '-': accuracy not measured).\n\n" +
            "\n".join(summary) + "\n\n" + "\n".join(lines) + "\n")
    if a.out:
        open(a.out, "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
