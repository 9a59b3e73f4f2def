#!/usr/bin/env python3
"""Dependency-analysis coverage on real topologies (issue 4).

For each torchvision architecture (random weights, non-trivial BatchNorm statistics, opset 13,
exported by tools/export_torchvision.py when missing), runs
  nncompress report --prunable --json   (groups found, prunable share of MACs, barriers)
  nncompress prune --ratio 0.5 --json   (every prunable group halved)
then loads and runs the pruned model in ONNX Runtime (tools/ort/run.js) on a seeded random input
and checks the output shape equals the original's. Writes the table to docs/pruning-coverage.md.

    /usr/bin/python3 tools/prune_coverage.py [--models resnet18,...] [--dir build/torchvision]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from doc_stamp import ort_version, stamp  # same folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Every family of torchvision 0.14's classifiers, the smaller members (the larger ones repeat
# the same blocks). swin_v2_* is missing: torch 1.13 cannot export it at opset 13 (aten::zero).
DEFAULT = ("alexnet convnext_tiny convnext_small densenet121 efficientnet_b0 efficientnet_v2_s "
           "googlenet inception_v3 maxvit_t mnasnet1_0 mobilenet_v2 mobilenet_v3_small "
           "mobilenet_v3_large regnet_x_400mf regnet_y_400mf regnet_y_800mf resnet18 resnet50 "
           "resnext50_32x4d wide_resnet50_2 shufflenet_v2_x0_5 shufflenet_v2_x1_0 squeezenet1_1 "
           "swin_t vgg11_bn vit_b_16 vit_b_32").split()


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def ort_output_shape(model, tmp, input_shape):
    inp = os.path.join(tmp, "x.npy")
    np.save(inp, np.random.default_rng(0).standard_normal(input_shape, dtype=np.float32))
    out = run(["node", os.path.join(ROOT, "tools/ort/run.js"), model, "--input", "input=" + inp,
               "--out-dir", os.path.join(tmp, "out")])
    return json.loads(out.stdout)["outputs"][0]["dims"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(DEFAULT))
    ap.add_argument("--dir", default=os.path.join(ROOT, "build/torchvision"))
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/nncompress"))
    ap.add_argument("--write", default=os.path.join(ROOT, "docs/pruning-coverage.md"))
    args = ap.parse_args()
    models = args.models.split(",")
    missing = [m for m in models if not os.path.exists(os.path.join(args.dir, m + ".onnx"))]
    if missing:
        subprocess.run([sys.executable, os.path.join(ROOT, "tools/export_torchvision.py"), "--models",
                        ",".join(missing), "--out", args.dir], check=True)
    rows, gaps = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for m in models:
            src = os.path.join(args.dir, m + ".onnx")
            dst = os.path.join(tmp, m + "_pruned.onnx")
            rep = json.loads(run([args.binary, "report", "--prunable", "--json", src]).stdout)
            pr = json.loads(run([args.binary, "prune", src, "-o", dst, "--ratio", "0.5", "--json"]).stdout)
            approximate = any(g.get("approximate") and g["prunable"] for g in rep["groups"])
            exact = pr
            if approximate:  # the same with approximate groups left whole
                exact = json.loads(run([args.binary, "prune", src, "-o", dst + ".exact.onnx", "--ratio",
                                        "0.5", "--exact-only", "--json"]).stdout)
            input_shape = rep["inputs"][0]["shape"]  # 224 x 224, inception_v3 299 x 299
            shape_orig = ort_output_shape(src, tmp, input_shape)
            shape_pruned = ort_output_shape(dst, tmp, input_shape)
            groups = rep["groups"]
            prunable = [g for g in groups if g["prunable"]]
            ok = shape_orig == shape_pruned
            rows.append((m, len(groups), len(prunable), rep["prunable_macs_share"],
                         rep["exact_prunable_macs_share"], pr["before"]["macs"], pr["after"]["macs"],
                         exact["after"]["macs"], pr["before"]["params"], pr["after"]["params"], ok))
            reasons = {}
            for g in groups:
                if g["prunable"] or g["reason"].startswith("graph output"):
                    continue
                key = g["reason"].split(":")[0]
                for word in ("Conv '", "Reshape '", "Slice '", "Split '"):
                    if key.startswith(word):
                        key = word.split(" ")[0] + " " + g["reason"].split(")", 1)[0].split("(", 1)[-1] \
                            if "group=" in g["reason"] else word.split(" ")[0] + g["reason"][g["reason"].find(" ", len(word)):]
                reasons[key] = reasons.get(key, 0) + 1
            for r, n in sorted(reasons.items()):
                gaps.append((m, n, r))
            print(f"{m}: {len(prunable)}/{len(groups)} prunable, MACs {pr['before']['macs']} -> "
                  f"{pr['after']['macs']}, ORT output {shape_pruned} {'ok' if ok else 'MISMATCH'}")
    lines = ["# Pruning coverage on torchvision architectures", "",
             "Made by `tools/prune_coverage.py`. " + stamp(args.binary),
             "(random weights; each prunable channel group halved with",
             f"`nncompress prune --ratio 0.5`; the pruned model is run in ONNX Runtime {ort_version()} and its output",
             "shape compared with the original's). \"Prunable share\" is the share of MACs in layers that",
             "at least one prunable group shrinks; \"exact\" counts only groups whose pruning is",
             "output-preserving (not through a LayerNorm over the channels, which `--exact-only` leaves",
             "whole). \"MACs kept\" is after/before; \"exact only\" the same with `--exact-only`.",
             "Models: every family of torchvision 0.14's classifiers, its smaller members (the larger",
             "ones repeat the same blocks); swin_v2 is missing because torch 1.13 cannot export it at",
             "opset 13.", "",
             "| model | groups | prunable | prunable share of MACs | exact share | MACs before | MACs after | MACs kept | MACs kept, exact only | params before | params after | runs in ORT, same output shape |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m, g, p, share, exact_share, mb, ma, me, pb, pa, ok in rows:
        lines.append(f"| {m} | {g} | {p} | {share:.1%} | {exact_share:.1%} | {mb/1e6:.1f} M | {ma/1e6:.1f} M | "
                     f"{ma/mb:.1%} | {me/mb:.1%} | {pb/1e6:.2f} M | {pa/1e6:.2f} M | {'yes' if ok else 'NO'} |")
    lines += ["", "## Known gaps: groups a human would prune that stay whole", "",
              "| model | groups | reason |", "|---|---|---|"]
    for m, n, r in gaps:
        lines.append(f"| {m} | {n} | {r} |")
    if not gaps:
        lines.append("| - | - | none |")
    with open(args.write, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", args.write)
    return 0 if all(r[-1] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
