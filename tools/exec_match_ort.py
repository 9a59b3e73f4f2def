#!/usr/bin/env python3
"""nncompress's executor against ONNX Runtime on torchvision architectures (issue 3).

Exports (random weights, non-trivial BatchNorm statistics; tools/export_torchvision.py) ResNet-18,
MobileNetV2, DenseNet-121 and ShuffleNetV2 when missing, runs each on the same seeded random
input with `nncompress run` and with ONNX Runtime (tools/ort/run.js), and prints the relative max
error max|ours - ort| / max|ort| per model. Exit status 1 if any exceeds 1e-4.

    /usr/bin/python3 tools/exec_match_ort.py [--models ...] [--dir build/torchvision]
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet18,mobilenet_v2,densenet121,shufflenet_v2_x1_0")
    ap.add_argument("--dir", default=os.path.join(ROOT, "build/torchvision"))
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/nncompress"))
    ap.add_argument("--threads", default="2")
    args = ap.parse_args()
    models = args.models.split(",")
    missing = [m for m in models if not os.path.exists(os.path.join(args.dir, m + ".onnx"))]
    if missing:
        subprocess.run([sys.executable, os.path.join(ROOT, "tools/export_torchvision.py"), "--models",
                        ",".join(missing), "--out", args.dir], check=True)
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        x = os.path.join(tmp, "x.npy")
        np.save(x, np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32))
        for m in models:
            path = os.path.join(args.dir, m + ".onnx")
            ours_dir, ort_dir = os.path.join(tmp, m + "_ours"), os.path.join(tmp, m + "_ort")
            subprocess.run([args.binary, "-q", "run", path, "--data", x, "--output-dir", ours_dir, "--batch", "1",
                            "--threads", args.threads], check=True)
            out = subprocess.run(["node", os.path.join(ROOT, "tools/ort/run.js"), path, "--input", "input=" + x,
                                  "--out-dir", ort_dir], check=True, capture_output=True, text=True)
            ort = np.load(json.loads(out.stdout)["outputs"][0]["file"])
            ours = np.load(sorted(glob.glob(os.path.join(ours_dir, "*.npy")))[0])
            err = float(np.abs(ours - ort).max() / max(np.abs(ort).max(), 1e-30))
            worst = max(worst, err)
            print(f"{m:22s} output {list(ort.shape)}  relative max error {err:.2e}")
    print(f"worst {worst:.2e} (limit 1e-4)")
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
