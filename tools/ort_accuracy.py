#!/usr/bin/env python3
"""Top-1 accuracy of ONNX models in ONNX Runtime (node, tools/ort/run.js) on Fashion-MNIST.

The independent check of what `nncompress eval` reports: the images are decoded and normalised
here with numpy (mean 0.2860, std 0.3530, as the fixtures were trained), fed to ONNX Runtime in
one batch, and the logits compared with the labels.

  /usr/bin/python3 tools/ort_accuracy.py MODEL.onnx [MODEL2.onnx ...] [--limit N]
Prints one JSON line per model: {"model", "count", "top1"}.
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

DATA = "/usr/share/datasets/fashion-mnist"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--limit", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    images = idx(f"{DATA}/t10k-images-idx3-ubyte.gz")[: args.limit]
    labels = idx(f"{DATA}/t10k-labels-idx1-ubyte.gz")[: args.limit].astype(np.int64)
    x = ((images.astype(np.float32) / 255.0 - 0.2860) / 0.3530).reshape(-1, 1, 28, 28)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/x.npy", x.astype(np.float32))
        for model in args.models:
            out = subprocess.run(
                ["node", f"{ROOT}/tools/ort/run.js", model, "--input", f"{tmp}/x.npy",
                 "--out-dir", f"{tmp}/out", "--threads", str(args.threads)],
                capture_output=True, text=True)
            if out.returncode != 0:
                print(json.dumps({"model": model, "error": out.stderr.strip()}))
                sys.exit(1)
            first = json.loads(out.stdout)["outputs"][0]
            logits = np.load(first["file"])
            top1 = float((logits.argmax(axis=1) == labels).mean())
            print(json.dumps({"model": model, "count": int(len(labels)), "top1": top1}))


if __name__ == "__main__":
    main()
