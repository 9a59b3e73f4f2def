#!/usr/bin/env python3
"""Where the bytes of an ONNX file go: initializers by dtype (large tensors vs small ones such as
scales and zero points), Constant nodes, node names, value names (node inputs/outputs),
attributes, value_info, doc strings.

usage: /usr/bin/python3 tools/onnx_bytes.py MODEL.onnx [MODEL2.onnx ...]
"""
import sys
from collections import Counter

import onnx
from onnx import TensorProto


def breakdown(path):
    m = onnx.load(path, load_external_data=False)
    g = m.graph
    c = Counter()
    total = len(open(path, "rb").read())
    for t in g.initializer:
        dt = {22: "int4", 21: "uint4"}.get(t.data_type) or TensorProto.DataType.Name(t.data_type).lower()
        n = 1
        for d in t.dims:
            n *= d
        kind = "small(<=64)" if n <= 64 else "data"
        c[f"init {dt} {kind}"] += t.ByteSize() - len(t.name.encode())
        c["init names"] += len(t.name.encode())
    for node in g.node:
        nb = node.ByteSize()
        c["node names"] += len(node.name.encode())
        c["node doc_string"] += len(node.doc_string.encode())
        io = sum(len(s.encode()) for s in list(node.input) + list(node.output))
        c["node input/output names"] += io
        if node.op_type == "Constant":
            c["Constant node tensors"] += sum(a.ByteSize() for a in node.attribute)
        else:
            c["node attributes"] += sum(a.ByteSize() for a in node.attribute)
        c["node op_type + framing"] += (nb - len(node.name.encode()) - len(node.doc_string.encode())
                                        - io - sum(a.ByteSize() for a in node.attribute))
    c["value_info"] += sum(v.ByteSize() for v in g.value_info)
    c["graph inputs/outputs"] += sum(v.ByteSize() for v in list(g.input) + list(g.output))
    c["doc strings (graph/model)"] += len(g.doc_string) + len(m.doc_string)
    ops = Counter(n.op_type for n in g.node)
    accounted = sum(c.values())
    c["framing/other"] = total - accounted
    print(f"== {path}: {total} bytes, {len(g.node)} nodes, {len(g.initializer)} initializers; "
          f"ops {dict(ops)}")
    for k, v in sorted(c.items(), key=lambda kv: -kv[1]):
        print(f"  {k:32s} {v:8d}  {100 * v / total:5.1f}%")


for p in sys.argv[1:]:
    breakdown(p)
