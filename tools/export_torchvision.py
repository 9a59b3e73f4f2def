#!/usr/bin/env python3
"""Export torchvision architectures with random (seeded) weights to ONNX.

Developer / benchmark tool: the files are large (resnet50 ~100 MB, vgg11_bn
~500 MB) and are NOT committed; CI never runs this. They exercise the
dependency analyser, surgery and the loader/saver on real topologies
(grouped and depthwise convs, SE blocks, channel shuffle, Concat, ...).

    /usr/bin/python3 tools/export_torchvision.py                       # default list
    /usr/bin/python3 tools/export_torchvision.py --models resnet50 --out /tmp/tv
    /usr/bin/python3 tools/export_torchvision.py --models resnet18 --keep-bn --dynamic-batch

Weights: torchvision's own initialisation under --seed. No pretrained weights
exist on these machines. Every BatchNorm gets non-trivial random parameters and
statistics (running_mean ~ N(0, 0.1), running_var ~ U(0.5, 1.5),
weight ~ U(0.5, 1.5), bias ~ N(0, 0.1)) so a wrong BN fold shows in outputs.

Export: opset 13, input "input" float32 [1,3,224,224] ("N" dynamic with
--dynamic-batch), output "logits" [1,1000]. Default export is eval mode with
constant folding (BN folded into the preceding Conv where the exporter can);
--keep-bn exports eval mode with TrainingMode.PRESERVE, which keeps the
BatchNormalization nodes (inference form, running statistics).

--save-io also writes NAME/test_data_set_0/{input_0,output_0}.pb (ONNX
TensorProto, the layout of the ONNX backend tests) with a seeded random input
and the torch eval-mode output, for comparing an executor with torch.

A manifest.json in --out lists file, size, float parameter count and op types.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import onnx
import onnx.numpy_helper
import torch
import torch.nn as nn
import torchvision

DEFAULT_MODELS = ("resnet18 resnet50 resnext50_32x4d mobilenet_v2 mobilenet_v3_small "
                  "efficientnet_b0 densenet121 shufflenet_v2_x1_0 squeezenet1_1 googlenet "
                  "regnet_y_400mf mnasnet1_0 vgg11_bn").split()

# constructor keyword arguments beyond weights=None
EXTRA_KWARGS = {
    "googlenet": dict(aux_logits=False, init_weights=True, transform_input=False),
    "inception_v3": dict(aux_logits=False, init_weights=True, transform_input=False),
}
# input resolution when not 224
INPUT_SIZE = {"inception_v3": 299}

FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
               onnx.TensorProto.BFLOAT16}


def build(name, seed):
    torch.manual_seed(seed)
    ctor = getattr(torchvision.models, name, None)
    if ctor is None:
        raise SystemExit("unknown torchvision model: %s" % name)
    model = ctor(weights=None, **EXTRA_KWARGS.get(name, {}))
    g = torch.Generator().manual_seed(seed + 1)
    n_bn = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(c, generator=g) * 0.1)
                n_bn += 1
    model.eval()
    return model, n_bn


def float_params(model):
    total = 0
    for t in model.graph.initializer:
        if t.data_type in FLOAT_TYPES:
            total += int(np.prod(t.dims))
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value" and a.t.data_type in FLOAT_TYPES:
                    total += int(np.prod(a.t.dims))
    return total


def export_one(name, args):
    t0 = time.time()
    model, n_bn = build(name, args.seed)
    size = INPUT_SIZE.get(name, 224)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(args.seed + 2))
    with torch.no_grad():
        ref = model(x)
    if not torch.isfinite(ref).all():
        print("WARNING: %s gives non-finite outputs with random weights" % name, file=sys.stderr)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, name + ".onnx")
    mode = torch.onnx.TrainingMode.PRESERVE if args.keep_bn else torch.onnx.TrainingMode.EVAL
    dyn = {"input": {0: "N"}, "logits": {0: "N"}} if args.dynamic_batch else None
    torch.onnx.export(model, x, path, opset_version=args.opset, input_names=["input"],
                      output_names=["logits"], dynamic_axes=dyn,
                      do_constant_folding=True, training=mode)
    m = onnx.load(path)
    onnx.checker.check_model(path if os.path.getsize(path) > 2_000_000_000 else m)
    ops = sorted({n.op_type for n in m.graph.node})
    for n in m.graph.node:
        if n.op_type == "BatchNormalization" and len(n.output) != 1:
            raise SystemExit("%s: BatchNormalization exported in training mode" % name)
    if args.save_io:
        d = os.path.join(args.out, name, "test_data_set_0")
        os.makedirs(d, exist_ok=True)
        for fn, arr, nm in (("input_0.pb", x, "input"), ("output_0.pb", ref, "logits")):
            t = onnx.numpy_helper.from_array(arr.numpy().astype(np.float32), nm)
            with open(os.path.join(d, fn), "wb") as f:
                f.write(t.SerializeToString())
    info = {
        "name": name,
        "file": name + ".onnx",
        "bytes": os.path.getsize(path),
        "params": float_params(m),
        "torch_params": int(sum(p.numel() for p in model.parameters())),
        "batchnorm_modules": n_bn,
        "batchnorm_nodes": sum(1 for n in m.graph.node if n.op_type == "BatchNormalization"),
        "nodes": len(m.graph.node),
        "ops": ops,
        "input_shape": [1, 3, size, size],
        "dynamic_batch": bool(args.dynamic_batch),
        "keep_bn": bool(args.keep_bn),
        "opset": args.opset,
        "seed": args.seed,
    }
    print("%-20s %7.1f MB %10d params %4d nodes  BN %3d  %.0fs  ops: %s"
          % (name, info["bytes"] / 1e6, info["params"], info["nodes"], info["batchnorm_nodes"],
             time.time() - t0, ",".join(ops)), flush=True)
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS),
                    help="comma-separated torchvision model names (default: %(default)s)")
    ap.add_argument("--out", default="build/torchvision")
    ap.add_argument("--keep-bn", action="store_true",
                    help="keep BatchNormalization nodes (TrainingMode.PRESERVE, eval mode)")
    ap.add_argument("--dynamic-batch", action="store_true", help="make the batch axis dynamic ('N')")
    ap.add_argument("--save-io", action="store_true",
                    help="write NAME/test_data_set_0/{input_0,output_0}.pb with the torch output")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--opset", type=int, default=13)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    manifest_path = os.path.join(args.out, "manifest.json")
    manifest = {}
    if os.path.exists(manifest_path):
        manifest = {e["name"]: e for e in json.load(open(manifest_path))}
    failed = []
    for name in names:
        try:
            manifest[name] = export_one(name, args)
        except Exception as e:  # keep going: report every failure at the end
            print("FAILED %s: %s: %s" % (name, type(e).__name__, e), file=sys.stderr, flush=True)
            failed.append(name)
    os.makedirs(args.out, exist_ok=True)
    with open(manifest_path, "w") as f:
        json.dump(list(manifest.values()), f, indent=2)
        f.write("\n")
    if failed:
        raise SystemExit("failed: %s" % ", ".join(failed))


if __name__ == "__main__":
    main()
