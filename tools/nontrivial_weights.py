#!/usr/bin/env python3
"""Torchvision exports whose outputs depend on every layer (issue 15's oracle test).

With torchvision's random initialisation ViT's classifier head is all zeros (the output is a
constant) and ConvNeXt's LayerScale is 1e-6 (pruned channels change the output by ~1e-6): the
zeroed-consumer oracle would compare two constants. This rewrites such initializers with seeded
normal values (heads and other all-zero tensors: std 0.02; LayerScale: std 0.5).

    /usr/bin/python3 tools/nontrivial_weights.py IN.onnx OUT.onnx
"""
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def main(src, dst):
    m = onnx.load(src)
    rng = np.random.default_rng(0)
    for i, init in enumerate(m.graph.initializer):
        a = numpy_helper.to_array(init)
        if a.dtype != np.float32 or a.size < 2:
            continue
        if "layer_scale" in init.name:
            std = 0.5
        elif "head" in init.name or not a.any():
            std = 0.02
        else:
            continue
        b = (rng.standard_normal(a.shape) * std).astype(np.float32)
        m.graph.initializer[i].CopyFrom(numpy_helper.from_array(b, init.name))
    onnx.save(m, dst)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
