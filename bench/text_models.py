#!/usr/bin/env python3
"""Text classifiers in ONNX Runtime after `nncompress quantize`: file size, fidelity to the float
model and latency, for the models of tools/export_text_models.py (token ids; one also takes an
attention mask, so calibration reads two inputs: --calib NAME=SPEC per input).

  /usr/bin/python3 bench/text_models.py [--nncompress build/nncompress] [--models DIR]
                                        [--iters 50] [--doc docs/text-models.md]

Variants: float; weights-only with the embedding tables left float (--exclude of their Gathers);
weights-only (tables int8 per row too); QDQ calibrated on samples 0:256. Fidelity: top-1
agreement and output cosine against the float model in ORT on samples 256:512, which calibration
did not see. Latency: ORT (CPU, 1 thread) median ms per run at batch 1 and batch 32, all variants
of a model timed round-robin. Prints a stamped markdown table (and writes it to --doc).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from doc_stamp import stamp  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {"encoder": ["input_ids"], "masked": ["input_ids", "attention_mask"]}
FILES = {"input_ids": "ids.npy", "attention_mask": "mask.npy"}
CALIB, HELD_OUT = (0, 256), (256, 512)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, **kw).stdout


def slices(models_dir, work):
    """Per input: npy files of the held-out rows and of batches 1 and 32 from them."""
    out = {}
    for name, f in FILES.items():
        a = np.load(os.path.join(models_dir, f))[HELD_OUT[0]:HELD_OUT[1]]
        for tag, rows in (("held", a), ("b1", a[:1]), ("b32", a[:32])):
            path = os.path.join(work, f"{name}_{tag}.npy")
            np.save(path, rows)
            out[(name, tag)] = path
    return out


def feeds(inputs, files, tag, flag):
    return [arg for i in inputs for arg in (flag, f"{i}={files[(i, tag)]}")]


def quantize(binary, model, out, args):
    j = json.loads(run([binary, "-q", "quantize", model, "-o", out, "--json", "--sqnr-samples",
                        "0"] + args))
    return [l["name"] for l in j["layers"] if l["op"] == "Gather"]


def ort_outputs(model, inputs, files, work):
    d = tempfile.mkdtemp(dir=work)
    run(["node", "tools/ort/run.js", model, "--out-dir", d] + feeds(inputs, files, "held", "--input"))
    return np.load(os.path.join(d, "logits.npy"))


def latency(model, inputs, files, tag, iters):
    j = json.loads(run(["node", "tools/ort/bench.js", model, "--threads", "1", "--iters",
                        str(iters), "--warmup", "5"] + feeds(inputs, files, tag, "--input")))
    return j["ms_per_run_median"]


def measure(binary, models_dir, name, iters, work):
    inputs = MODELS[name]
    files = slices(models_dir, work)
    model = os.path.join(models_dir, name + ".onnx")
    calib = [a for i in inputs for a in ("--calib", f"{i}={os.path.join(models_dir, FILES[i])}")]
    calib += ["--calib-range", f"{CALIB[0]}:{CALIB[1]}"]
    variants = {"float": model}
    tables = quantize(binary, model, os.path.join(work, "w.onnx"), ["--format", "weights-only"])
    excluded = [a for t in tables for a in ("--exclude", t)]
    quantize(binary, model, os.path.join(work, "wf.onnx"), ["--format", "weights-only"] + excluded)
    quantize(binary, model, os.path.join(work, "q.onnx"), calib)
    variants["weights-only, tables float"] = os.path.join(work, "wf.onnx")
    variants["weights-only"] = os.path.join(work, "w.onnx")
    variants["qdq"] = os.path.join(work, "q.onnx")
    ref = ort_outputs(model, inputs, files, work)
    rows = {}
    for v, path in variants.items():
        y = ort_outputs(path, inputs, files, work)
        cos = float((ref * y).sum() / np.sqrt((ref * ref).sum() * (y * y).sum()))
        rows[v] = {"bytes": os.path.getsize(path), "agree": float((ref.argmax(1) == y.argmax(1)).mean()),
                   "cos": cos, "b1": [], "b32": []}
    for _ in range(3):  # round-robin passes: load bursts hit every variant alike
        for v, path in variants.items():
            for tag in ("b1", "b32"):
                rows[v][tag].append(latency(path, inputs, files, tag, iters))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nncompress", default=os.path.join(ROOT, "build", "nncompress"))
    ap.add_argument("--models", help="output of tools/export_text_models.py (exported when missing)")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--doc")
    a = ap.parse_args()
    work = tempfile.mkdtemp()
    models_dir = a.models or os.path.join(work, "text")
    if not os.path.exists(os.path.join(models_dir, "masked.onnx")):
        run(["/usr/bin/python3", "tools/export_text_models.py", "--out", models_dir])
    lines = [
        "# Text models in ONNX Runtime after `nncompress quantize`", "",
        f"Generated by `/usr/bin/python3 bench/text_models.py`. Do not edit by hand. "
        f"{stamp(a.nncompress)}", "",
        "Models from `tools/export_text_models.py` (seeded random weights; 8000 x 128 word "
        "embeddings, 2 Transformer encoder layers, 5 classes; `masked` also takes "
        "`attention_mask`). Agreement and cosine: against the float model in ORT on token "
        "samples 256:512; QDQ calibrated on samples 0:256 (`--calib input_ids=... --calib "
        "attention_mask=...`). ms: ORT CPU, 1 thread, median of 3 round-robin passes of "
        f"{a.iters} runs; 16 tokens per sample. Cells of 0.2-0.4 ms move by up to a third between "
        "runs on a 2-core machine; compare the batch-32 column.", "",
        "| model | variant | file bytes | smaller | top-1 agreement | cosine | ms batch 1 | ms batch 32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in MODELS:
        rows = measure(a.nncompress, models_dir, name, a.iters, work)
        base = rows["float"]["bytes"]
        for v, r in rows.items():
            lines.append(f"| {name} | {v} | {r['bytes']:,} | {base / r['bytes']:.2f}x | "
                         f"{100 * r['agree']:.2f}% | {r['cos']:.6f} | "
                         f"{np.median(r['b1']):.3f} | {np.median(r['b32']):.3f} |")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if a.doc:
        with open(a.doc, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
