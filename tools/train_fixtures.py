#!/usr/bin/env python3
"""Train the small Fashion-MNIST CNN fixtures committed under models/.

Developer tool only: CI never runs it; it uses the committed .onnx files.

    /usr/bin/python3 tools/train_fixtures.py                 # all six
    /usr/bin/python3 tools/train_fixtures.py --only resnet   # retrain one
    /usr/bin/python3 tools/train_fixtures.py --only vgg_bn --epochs 6

Needs the Debian packages python3-torch (1.13), python3-onnx (1.12) and
dataset-fashion-mnist (read directly from its IDX .gz files; nothing is
downloaded).  CPU only, fully seeded: every model re-seeds at its start, so
--only NAME gives the same weights as a full run (with the same --threads).

Writes models/NAME.onnx, models/fixtures.json (merged by name with any
existing entries) and models/README.md (its table generated from
fixtures.json).

Each export is checked with onnx.checker, and the ONNX graph is executed by a
small interpreter below (torch.nn.functional per ONNX node, written from the
ONNX operator spec, independent of the exporter) and compared with the torch
eval-mode output, so a BatchNormalization exported in training mode, a wrong
fold or a bad reshape would be caught.
"""
import argparse
import gzip
import json
import os
import time

import numpy as np
import onnx
import onnx.numpy_helper
import torch
import torch.nn as nn
import torch.nn.functional as F

from doc_stamp import ort_version  # same folder

MEAN = 0.2860
STD = 0.3530
DATA_DIR = "/usr/share/datasets/fashion-mnist"
DEFAULT_EPOCHS = 4
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS_DIR = os.path.join(ROOT, "models")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------
def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[0:4], "big")
    ndim = magic & 0xFF
    assert magic >> 8 == 0x08, "expected unsigned byte IDX data: %s" % path
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(dims)


def load_split(split):
    images = read_idx(os.path.join(DATA_DIR, "%s-images-idx3-ubyte.gz" % split))
    labels = read_idx(os.path.join(DATA_DIR, "%s-labels-idx1-ubyte.gz" % split))
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    x = ((x - MEAN) / STD).unsqueeze(1).contiguous()
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


# ----------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------
def conv_bn_relu(cin, cout, k=3, stride=1, groups=1):
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class VggBN(nn.Module):
    """VGG-style conv-BN-ReLU stacks + MaxPool; GAP then x.view(N, -1)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn_relu(1, 16), nn.MaxPool2d(2),                           # 14
            *conv_bn_relu(16, 32), *conv_bn_relu(32, 32), nn.MaxPool2d(2),   # 7
            *conv_bn_relu(32, 64), *conv_bn_relu(64, 64), nn.MaxPool2d(2),   # 3
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(64, 10)

    def forward(self, x):
        x = self.pool(self.features(x))
        x = x.view(x.size(0), -1)   # exports Shape->Gather->Unsqueeze->Concat->Reshape
        return self.classifier(x)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        idt = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + idt)


class ResNet(nn.Module):
    """ResNet: identity blocks and stride-2 blocks with 1x1 conv+BN projection."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn_relu(1, 16))       # 28
        self.layer1 = BasicBlock(16, 24, 2)                  # 14, projection
        self.layer2 = BasicBlock(24, 24, 1)                  # 14, identity
        self.layer3 = BasicBlock(24, 48, 2)                  # 7, projection
        self.layer4 = BasicBlock(48, 48, 1)                  # 7, identity
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(48, 10)

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(torch.flatten(self.pool(x), 1))


class SqueezeExcite(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, c // r, 1)
        self.fc2 = nn.Conv2d(c // r, c, 1)

    def forward(self, x):
        s = F.relu(self.fc1(self.pool(x)))
        return x * F.hardsigmoid(self.fc2(s))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand, se=False):
        super().__init__()
        hid = cin * expand
        layers = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hid, 1, bias=False), nn.BatchNorm2d(hid), nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(hid, hid, 3, stride, 1, groups=hid, bias=False),
                   nn.BatchNorm2d(hid), nn.ReLU6(inplace=True)]
        if se:
            layers.append(SqueezeExcite(hid))
        layers += [nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    """MobileNetV2-style: depthwise convs, inverted residuals, SE blocks."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU6(inplace=True))           # 14
        self.blocks = nn.Sequential(
            InvertedResidual(16, 16, 1, 1),                          # 14, residual
            InvertedResidual(16, 24, 2, 4),                          # 7
            InvertedResidual(24, 24, 1, 4, se=True),                 # 7, residual
            InvertedResidual(24, 40, 1, 4, se=True),                 # 7
            InvertedResidual(40, 40, 1, 4),                          # 7, residual
        )
        self.head = nn.Sequential(nn.Conv2d(40, 128, 1, bias=False), nn.BatchNorm2d(128),
                                  nn.ReLU6(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(128, 10)

    def forward(self, x):
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


class DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1 (bottleneck) - BN-ReLU-grouped Conv3x3 (growth), concat."""

    def __init__(self, cin, growth, bottleneck=2, groups=4):
        super().__init__()
        mid = growth * bottleneck
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, growth, 3, 1, 1, groups=groups, bias=False)

    def forward(self, x):
        y = self.conv1(F.relu(self.bn1(x)))
        y = self.conv2(F.relu(self.bn2(y)))
        return torch.cat([x, y], 1)


class DenseNet(nn.Module):
    """DenseNet-style (pre-activation, so some BN stay unfolded after Concat)."""

    def __init__(self, growth=16):
        super().__init__()
        c = 24
        self.stem = nn.Sequential(nn.Conv2d(1, c, 3, 2, 1, bias=False))   # 14
        b1 = []
        for _ in range(3):
            b1.append(DenseLayer(c, growth))
            c += growth
        self.block1 = nn.Sequential(*b1)
        self.trans = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                                   nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2))  # 7
        c //= 2
        b2 = []
        for _ in range(3):
            b2.append(DenseLayer(c, growth))
            c += growth
        self.block2 = nn.Sequential(*b2)
        self.final = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, 10)

    def forward(self, x):
        x = self.final(self.block2(self.trans(self.block1(self.stem(x)))))
        return self.classifier(torch.flatten(self.pool(x), 1))


class SpreadConv2d(nn.Conv2d):
    """Conv2d whose output channels carry a fixed gain spread over `decades` decades.

    The gain is a buffer (not learnt), folded into the weight at export, so the activation
    variance differs by up to 10^(2 decades) between the channels a Concat joins: the next BN's
    scales gamma/sqrt(var+eps) then span >= 100x, as in real pre-activation DenseNets (0.7-341x
    seen in the wild), which is what forward BN folding into a later conv cannot survive.
    """

    def __init__(self, *args, decades=2.5, **kwargs):
        super().__init__(*args, **kwargs)
        g = torch.logspace(-decades / 2, decades / 2, self.out_channels)
        perm = torch.randperm(self.out_channels, generator=torch.Generator().manual_seed(7))
        self.register_buffer("gain", g[perm].reshape(-1, 1, 1, 1))

    def forward(self, x):
        return F.conv2d(x, self.weight * self.gain, self.bias, self.stride, self.padding,
                        self.dilation, self.groups)


class PreactLayer(nn.Module):
    """Pre-activation dense layer: BN-ReLU-Conv1x1 - BN-ReLU-Conv3x3 (gain-spread), concat."""

    def __init__(self, cin, growth, bottleneck=2):
        super().__init__()
        mid = growth * bottleneck
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = SpreadConv2d(mid, growth, 3, 1, 1, bias=False)

    def forward(self, x):
        y = self.conv1(F.relu(self.bn1(x)))
        y = self.conv2(F.relu(self.bn2(y)))
        return torch.cat([x, y], 1)


class PreactDenseNet(nn.Module):
    """Pre-activation DenseNet whose post-Concat BN scales span >= 100x (see SpreadConv2d)."""

    def __init__(self, growth=12):
        super().__init__()
        c = 16
        self.stem = SpreadConv2d(1, c, 3, 2, 1, bias=False)                      # 14
        layers = []
        for _ in range(3):
            layers.append(PreactLayer(c, growth))
            c += growth
        self.block1 = nn.Sequential(*layers)
        self.trans = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                                   nn.Conv2d(c, c // 2, 1, bias=False), nn.MaxPool2d(2))  # 7
        c //= 2
        layers = []
        for _ in range(3):
            layers.append(PreactLayer(c, growth))
            c += growth
        self.block2 = nn.Sequential(*layers)
        self.final = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, 10)

    def forward(self, x):
        x = self.final(self.block2(self.trans(self.block1(self.stem(x)))))
        return self.classifier(torch.flatten(self.pool(x), 1))


class FlattenHead(nn.Module):
    """Convnet whose head flattens a 16x7x7 map into a Linear (Gemm)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn_relu(1, 32), nn.MaxPool2d(2),        # 14
            *conv_bn_relu(32, 32), nn.MaxPool2d(2),       # 7
            *conv_bn_relu(32, 16, k=1),                   # 16x7x7
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * 7 * 7, 64),
                                        nn.ReLU(inplace=True), nn.Dropout(0.2),
                                        nn.Linear(64, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


FIXTURES = {
    "vgg_bn": dict(cls=VggBN, keep_bn=True,
                   arch="VGG: 5x conv3x3-BN-ReLU in 3 stages (16; 32,32; 64,64), MaxPool "
                        "after each, GAP, x.view(N,-1) (Shape-Gather-Unsqueeze-Concat-Reshape), "
                        "Linear; BN kept"),
    "resnet": dict(cls=ResNet, keep_bn=True,
                   arch="ResNet: stem conv3x3 16, 4 BasicBlocks (24/s2, 24, 48/s2, 48); the "
                        "stride-2 blocks have 1x1 conv+BN projection shortcuts; residual Add, "
                        "GAP, Flatten, Linear; BN kept"),
    "mobilenetv2": dict(cls=MobileNetV2, keep_bn=False,
                        arch="MobileNetV2: stem conv3x3/s2 16, depthwise 3x3, 5 inverted "
                             "residuals (3 with Add), "
                             "2 SE blocks (GAP-Conv-Relu-Conv-HardSigmoid-Mul), ReLU6=Clip, "
                             "1x1 head 128, GAP, Flatten, Linear; BN folded"),
    "densenet": dict(cls=DenseNet, keep_bn=False,
                     arch="DenseNet: stem conv3x3/s2 24, 2 dense blocks x3 layers (growth 16, "
                          "Concat), BN-ReLU-1x1 bottleneck + BN-ReLU-grouped 3x3 conv (groups=4), "
                          "transition BN-ReLU-1x1+AvgPool, GAP, Flatten, Linear; BN after "
                          "Concat stays unfolded"),
    "flatten_head": dict(cls=FlattenHead, keep_bn=False,
                         arch="Convnet: conv3x3 32, conv3x3 32 (MaxPool each), conv1x1 16, "
                              "Flatten 16x7x7=784 -> Gemm 64 -> Relu -> Gemm 10; BN folded"),
    "preact_densenet": dict(cls=PreactDenseNet, keep_bn=False, holdout=10000,
                            min_bn_scale_span=100,
                            arch="Pre-activation DenseNet: stem conv3x3/s2 16, 2 dense blocks x3 "
                                 "layers (growth 12, Concat), BN-ReLU-1x1 + BN-ReLU-3x3, "
                                 "transition BN-ReLU-1x1+MaxPool, final BN-ReLU, GAP, Linear; "
                                 "fixed per-channel gains on the stem and 3x3 convs make the "
                                 "BN after each Concat span >= 100x in scale; BN after Concat "
                                 "stays unfolded"),
}


# ----------------------------------------------------------------------------
# counting
# ----------------------------------------------------------------------------
def count_macs(model):
    macs = [0]

    def conv_hook(m, inp, out):
        kh, kw = m.kernel_size
        macs[0] += out.shape[1] * out.shape[2] * out.shape[3] * (m.in_channels // m.groups) * kh * kw

    def lin_hook(m, inp, out):
        macs[0] += m.in_features * m.out_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(lin_hook))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    for h in hooks:
        h.remove()
    return int(macs[0])


FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
               onnx.TensorProto.BFLOAT16}


# Inputs that configure an op rather than hold learnt weights (the same table as
# src/analysis/model_stats.cc): float tensors read only there are not params.
SETTING_INPUTS = {"Clip": {1, 2}, "Pad": {1, 2, 3}, "Resize": {1, 2, 3}, "Upsample": {1},
                  "Reshape": {1}, "Expand": {1}, "Tile": {1}, "Slice": {1, 2, 3, 4},
                  "Squeeze": {1}, "Unsqueeze": {1}, "TopK": {1}, "Range": {0, 1, 2},
                  "ConstantOfShape": {0}, "OneHot": {1, 2}, "Split": {1}, "Dropout": {1, 2},
                  "Pow": {1}, "CumSum": {1}, "ReduceSum": {1}, "ReduceMean": {1},
                  "ReduceMax": {1}, "ReduceMin": {1}, "ReduceProd": {1}, "ReduceL2": {1}}


def onnx_float_params(model):
    weight_reads = set()  # names read at an input that is not a setting
    for n in model.graph.node:
        for i, name in enumerate(n.input):
            if n.domain not in ("", "ai.onnx") or i not in SETTING_INPUTS.get(n.op_type, ()):
                weight_reads.add(name)
    total = 0
    for t in model.graph.initializer:
        if t.data_type in FLOAT_TYPES and t.name in weight_reads:
            total += int(np.prod(t.dims))
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output[0] in weight_reads:
            for a in n.attribute:
                if a.name == "value" and a.t.data_type in FLOAT_TYPES:
                    total += int(np.prod(a.t.dims))
    return total


# ----------------------------------------------------------------------------
# a tiny ONNX interpreter (torch.nn.functional per node) for the export check
# ----------------------------------------------------------------------------
def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def run_onnx(model, x):
    env = {t.name: torch.from_numpy(onnx.numpy_helper.to_array(t).copy())
           for t in model.graph.initializer}
    env[model.graph.input[0].name] = x
    for node in model.graph.node:
        a = _attrs(node)
        i = [env[n] if n else None for n in node.input]
        op = node.op_type
        if op == "Constant":
            y = torch.from_numpy(onnx.numpy_helper.to_array(a["value"]).copy())
        elif op == "Conv":
            assert a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
            p = a.get("pads", [0, 0, 0, 0])
            assert p[0] == p[2] and p[1] == p[3]
            y = F.conv2d(i[0], i[1], i[2] if len(i) > 2 else None, a.get("strides", [1, 1]),
                         (p[0], p[1]), a.get("dilations", [1, 1]), a.get("group", 1))
        elif op == "BatchNormalization":
            assert len(node.output) == 1, "BatchNormalization exported in training mode"
            y = F.batch_norm(i[0], i[3], i[4], i[1], i[2], False, 0.0, a.get("epsilon", 1e-5))
        elif op == "Relu":
            y = F.relu(i[0])
        elif op == "Clip":
            lo = i[1].item() if len(i) > 1 and i[1] is not None else -float("inf")
            hi = i[2].item() if len(i) > 2 and i[2] is not None else float("inf")
            y = torch.clamp(i[0], lo, hi)
        elif op == "Sigmoid":
            y = torch.sigmoid(i[0])
        elif op == "HardSigmoid":
            y = torch.clamp(a.get("alpha", 0.2) * i[0] + a.get("beta", 0.5), 0, 1)
        elif op == "MaxPool" or op == "AveragePool":
            p = a.get("pads", [0, 0, 0, 0])
            assert p[0] == p[2] and p[1] == p[3] and not a.get("ceil_mode", 0)
            k = a["kernel_shape"]
            s = a.get("strides", [1, 1])
            if op == "MaxPool":
                y = F.max_pool2d(i[0], k, s, (p[0], p[1]))
            else:
                y = F.avg_pool2d(i[0], k, s, (p[0], p[1]),
                                 count_include_pad=bool(a.get("count_include_pad", 0)))
        elif op == "Pad":
            assert a.get("mode", b"constant") in (b"constant", "constant")
            p = i[1].tolist()
            r = len(p) // 2
            val = i[2].item() if len(i) > 2 and i[2] is not None else 0.0
            assert min(p) >= 0
            torch_pads = []
            for ax in reversed(range(r)):
                torch_pads += [p[ax], p[ax + r]]
            y = F.pad(i[0], torch_pads, value=val)
        elif op == "GlobalAveragePool":
            y = i[0].mean(dim=(2, 3), keepdim=True)
        elif op == "Add":
            y = i[0] + i[1]
        elif op == "Mul":
            y = i[0] * i[1]
        elif op == "Concat":
            y = torch.cat(i, a["axis"])
        elif op == "Flatten":
            ax = a.get("axis", 1)
            y = i[0].reshape(int(np.prod(i[0].shape[:ax])), -1)
        elif op == "Shape":
            y = torch.tensor(list(i[0].shape), dtype=torch.int64)
        elif op == "Gather":
            y = torch.from_numpy(np.asarray(np.take(i[0].numpy(), i[1].numpy(), axis=a.get("axis", 0))))
        elif op == "Unsqueeze":
            y = i[0]
            for ax in sorted(i[1].tolist()):
                y = y.unsqueeze(ax)
        elif op == "Reshape":
            shape = [d if d != 0 else i[0].shape[k] for k, d in enumerate(i[1].tolist())]
            y = i[0].reshape(shape)
        elif op == "Gemm":
            A = i[0].t() if a.get("transA", 0) else i[0]
            B = i[1].t() if a.get("transB", 0) else i[1]
            y = a.get("alpha", 1.0) * (A @ B)
            if len(i) > 2 and i[2] is not None:
                y = y + a.get("beta", 1.0) * i[2]
        elif op == "MatMul":
            y = i[0] @ i[1]
        elif op in ("Identity", "Dropout"):
            y = i[0]
        else:
            raise NotImplementedError("op %s" % op)
        env[node.output[0]] = y
    return env[model.graph.output[0].name]


# ----------------------------------------------------------------------------
# training / export
# ----------------------------------------------------------------------------
def evaluate(model, x, y, bs=1000):
    model.eval()
    correct = 0
    with torch.no_grad():
        for k in range(0, len(x), bs):
            correct += (model(x[k:k + bs]).argmax(1) == y[k:k + bs]).sum().item()
    return correct / len(x)


def train(name, model, data, epochs, seed, bs=128, lr=3e-3, limit=None):
    xtr, ytr, xte, yte = data
    if limit:
        xtr, ytr = xtr[:limit], ytr[:limit]
    gen = torch.Generator().manual_seed(seed)
    steps = (len(xtr) + bs - 1) // bs
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps,
                                                pct_start=0.25)
    cl = torch.channels_last
    model.to(memory_format=cl)   # faster mkldnn convs on CPU
    for ep in range(epochs):
        model.train()
        t0 = time.time()
        perm = torch.randperm(len(xtr), generator=gen)
        tot_loss, correct = 0.0, 0
        for s in range(steps):
            idx = perm[s * bs:(s + 1) * bs]
            xb, yb = xtr[idx], ytr[idx]
            # augmentation: random horizontal flip
            flip = torch.rand(len(xb), generator=gen) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            out = model(xb.contiguous(memory_format=cl))
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot_loss += loss.item()
            correct += (out.argmax(1) == yb).sum().item()
        print("  [%s] epoch %d/%d loss %.4f train top1 %.4f (%.0fs)"
              % (name, ep + 1, epochs, tot_loss / steps, correct / len(xtr), time.time() - t0),
              flush=True)
    model.to(memory_format=torch.contiguous_format)
    return evaluate(model, xte, yte)


def export(model, path, keep_bn):
    model.eval()
    dummy = torch.zeros(2, 1, 28, 28)
    mode = torch.onnx.TrainingMode.PRESERVE if keep_bn else torch.onnx.TrainingMode.EVAL
    torch.onnx.export(model, dummy, path, opset_version=13, input_names=["input"],
                      output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                      do_constant_folding=True, training=mode)
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    return m


def check_export(model, m, xte, keep_bn):
    ops = sorted({n.op_type for n in m.graph.node})
    if keep_bn:
        assert "BatchNormalization" in ops, "BatchNormalization was folded"
    for n in m.graph.node:
        if n.op_type == "BatchNormalization":
            assert len(n.output) == 1, "BatchNormalization in training mode"
    model.eval()
    for xb in (xte[:1], xte[:7], xte[:256]):
        with torch.no_grad():
            ref = model(xb)
            got = run_onnx(m, xb)
        assert got.shape == ref.shape, (got.shape, ref.shape)
        err = (got - ref).abs().max().item()
        assert err < 1e-3, "ONNX graph differs from torch eval: max abs err %g" % err
        assert (got.argmax(1) == ref.argmax(1)).all()
    return ops, err


def batchnorm_scale_span(m):
    """Largest max/min ratio of gamma/sqrt(var+eps) over the BatchNormalization nodes (0: none)."""
    init = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    span = 0.0
    for n in m.graph.node:
        if n.op_type != "BatchNormalization":
            continue
        eps = _attrs(n).get("epsilon", 1e-5)
        k = np.abs(init[n.input[1]] / np.sqrt(init[n.input[4]] + eps))
        span = max(span, float(k.max() / max(k.min(), 1e-30)))
    return span


def write_readme(entries, path):
    lines = []
    w = lines.append
    w("# Fixture models")
    w("")
    trained_on = sorted({e.get("train_images", 60000) for e in entries})
    w("Small CNNs trained on Fashion-MNIST (%s train images, top-1 measured on the 10k test"
      % " / ".join("the first %dk" % (n // 1000) if n < 60000 else "all 60k" for n in trained_on))
    w("set in torch eval mode), exported to ONNX opset 13. They are the real, trained models")
    w("that the tests and benchmarks of nncompress compress. **CI never trains**: it uses the")
    w("committed `.onnx` files and `fixtures.json`.")
    w("")
    if any(n == 60000 for n in trained_on):
        w("**Held-out data.** The results scripts and the README make every decision (compress's")
        w("accuracy demand, calibration, the choice of a calibration method) on training images")
        w("and read the test set only for the reported accuracy: validation is the last 10k")
        w("training images (`--data-range 50000:60000`), calibration the first 50k. These fixtures")
        w("were trained on all 60k, so the last 10k are not truly unseen by the float model: the")
        w("accuracy measured on them is optimistic (training accuracy), and a drop measured there")
        w("can differ from the drop on the test set. The test set stays untouched by every")
        w("decision. The honest choice for new fixtures is `--holdout 10000` (train on the first")
        w("50k); the shipped files were not retrained, because the tests and the tables in docs/")
        w("are tied to their weights.")
        w("")
    w("Every model: input `input` float32 `[N,1,28,28]` (N is a dynamic axis named `N`),")
    w("output `logits` `[N,10]` (no softmax). Preprocessing: `x/255`, then")
    w("`(x - %.4f) / %.4f`. Classes: %s." % (MEAN, STD, ", ".join(CLASSES)))
    w("")
    w("| name | file | architecture | ONNX ops | params (ONNX floats) | MACs | test top-1 | BN kept | size |")
    w("|---|---|---|---|---:|---:|---:|---|---:|")
    for e in entries:
        w("| %s | %s | %s | %s | %d | %d | %.2f%% | %s | %.1f KB |"
          % (e["name"], e["file"], e.get("arch", "").replace("|", "\\|"), ", ".join(e["ops"]), e["params"],
             e["macs"], 100 * e["top1"], "yes" if e["keeps_batchnorm"] else "no",
             e.get("file_bytes", 0) / 1024.0))
    w("")
    w("The table is generated by `tools/train_fixtures.py` from `fixtures.json`; do not edit it by hand.")
    w("")
    w("## Counting conventions (`fixtures.json`)")
    w("")
    w("- `params`: total element count of all floating-point tensors in the exported ONNX file")
    w("  (float initializers plus float tensors held in `Constant` nodes; int64 shape constants")
    w("  are excluded, and so are float tensors read only at inputs that configure an op, such")
    w("  as Clip bounds: `SETTING_INPUTS`, the table `nncompress report` uses), computed with")
    w("  the `onnx` package from the file.")
    w("- `torch_params`: sum of `numel` of the torch model's parameters (BN running statistics")
    w("  are buffers, not parameters; where BN is folded the ONNX count is smaller).")
    w("- `macs`: torch forward hooks on a 1x1x28x28 input; per Conv2d")
    w("  `Cout*Hout*Wout*(Cin/groups)*kh*kw`, per Linear `in*out`; nothing else, bias not counted.")
    w("- `top1`: fraction of the 10k test images, torch eval mode.")
    w("- `ops`: sorted unique ONNX op types of the graph.")
    w("")
    w("## Exporter details worth knowing")
    w("")
    w("- `vgg_bn` and `resnet` keep their `BatchNormalization` nodes (inference mode, one")
    w("  output, running statistics): exported with `model.eval()` and")
    w("  `torch.onnx.export(..., training=torch.onnx.TrainingMode.PRESERVE)`, which skips the")
    w("  exporter's Conv+BN fusion pass. Their BN statistics are the trained ones (non-trivial).")
    w("- `mobilenetv2` and `flatten_head` are exported the default way (eval mode, constant")
    w("  folding): BN is folded into the preceding Conv's weight and bias.")
    w("- `densenet` is also exported the default way, but it is pre-activation (BN-ReLU-Conv):")
    w("  the BN that read a Concat output (first BN of each dense layer, transition, final) cannot")
    w("  be folded and stay as `BatchNormalization` nodes (8 of 14); the BN right after each 1x1")
    w("  bottleneck conv is folded into it. Its `nn.AvgPool2d(2)` exports as `Pad` (all-zero")
    w("  pads) -> `AveragePool`, as torchvision's densenet121 does.")
    w("- `preact_densenet` (trained on the first 50k images, `holdout` 10000) is pre-activation")
    w("  like `densenet`, but its stem and 3x3 convs multiply each output channel by a fixed gain")
    w("  (a buffer, log-spaced over 2.5 decades, folded into the weight at export), so the BN")
    w("  after each Concat has scales gamma/sqrt(var+eps) spanning >= 100x")
    w("  (`batchnorm_scale_span`, checked at export): folding such a BN forward into the next")
    w("  conv's input channels ruins that conv's per-channel int8 weight grid.")
    w("- `resnet`: the two BN that meet at a projection block's Add (bn2 and the shortcut BN)")
    w("  receive identical gradients, so their trained biases are bitwise equal and the exporter")
    w("  deduplicates them: one initializer feeds the other BN through an `Identity` node.")
    w("- `vgg_bn` flattens with `x.view(x.size(0), -1)` after global pooling; with the dynamic")
    w("  batch axis this exports as a `Shape -> Gather -> Unsqueeze -> Concat -> Reshape`")
    w("  subgraph (the int64 shape constants are not counted in `params`). The other models")
    w("  use `torch.flatten`/`nn.Flatten`, exported as a single `Flatten` node; `flatten_head`")
    w("  flattens a 16x7x7 map, so one conv channel feeds 49 consecutive Gemm input features.")
    w("- `mobilenetv2`: ReLU6 exports as `Clip(0, 6)`, `F.hardsigmoid` as `HardSigmoid`")
    w("  (alpha=1/6, beta=0.5); the SE gate is `GlobalAveragePool -> Conv -> Relu -> Conv ->")
    w("  HardSigmoid -> Mul`. The Clip bounds are float scalar `Constant` nodes (22 of them,")
    w("  not counted in `params`: they configure Clip, they are not learnt weights).")
    w("- Each export is checked with `onnx.checker` (full check) and executed by a small")
    w("  interpreter in the script, compared with the torch eval-mode output (max abs error")
    w("  recorded as `max_abs_err_vs_torch`). When committed, the files were also run with")
    w("  ONNX Runtime (onnxruntime-node %s, 10k test set, dynamic batch): same top-1."
      % ort_version())
    w("")
    w("## Reproducing")
    w("")
    w("```")
    w("apt-get install -y python3-torch python3-onnx dataset-fashion-mnist")
    w("/usr/bin/python3 tools/train_fixtures.py                  # all six")
    w("/usr/bin/python3 tools/train_fixtures.py --only resnet    # retrain one (merges fixtures.json)")
    w("/usr/bin/python3 tools/train_fixtures.py --only vgg_bn --epochs 6")
    w("```")
    w("")
    w("Use `/usr/bin/python3` (the Debian interpreter that has torch 1.13 and onnx 1.12).")
    w("Training is CPU-only and seeded (`seed` in `fixtures.json`; each model re-seeds at its")
    w("start); AdamW with a one-cycle schedule (max lr 3e-3), batch 128, random horizontal flip,")
    w("channels-last on CPU, default `--threads 1`. Bit-exact weights are reproducible with the")
    w("same torch build and `--threads`; other builds give slightly different weights and")
    w("accuracies. The whole run took about 18 minutes (3-4.5 min per model) with one thread on")
    w("a 2-core machine shared with a compiler.")
    w("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", choices=list(FIXTURES),
                    help="train only this fixture (repeatable)")
    ap.add_argument("--epochs", type=int, default=None,
                    help="epochs per model (default: per-model default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is fastest on a shared 2-core machine)")
    ap.add_argument("--out", default=MODELS_DIR)
    ap.add_argument("--limit", type=int, default=None, help="train on the first N images only (smoke test)")
    ap.add_argument("--holdout", type=int, default=0,
                    help="keep the last N training images out of training (validation for the "
                         "results scripts: 10000; the shipped fixtures used 0)")
    ap.add_argument("--no-write-json", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    names = args.only or list(FIXTURES)
    xall, yall = load_split("train")
    xte, yte = load_split("t10k")
    print("data: train %s test %s" % (tuple(xall.shape), tuple(xte.shape)), flush=True)

    json_path = os.path.join(args.out, "fixtures.json")
    entries = {}
    if os.path.exists(json_path):
        for e in json.load(open(json_path)):
            entries[e["name"]] = e

    t_all = time.time()
    for name in names:
        spec = FIXTURES[name]
        holdout = spec.get("holdout", args.holdout)  # new fixtures keep the last 10k out
        xtr, ytr = (xall[:-holdout], yall[:-holdout]) if holdout else (xall, yall)
        epochs = args.epochs or spec.get("epochs", DEFAULT_EPOCHS)
        torch.manual_seed(args.seed)
        np.random.seed(args.seed)
        model = spec["cls"]()
        t0 = time.time()
        print("== %s: %d params, %d MACs, %d epochs"
              % (name, sum(p.numel() for p in model.parameters()), count_macs(model), epochs), flush=True)
        top1 = train(name, model, (xtr, ytr, xte, yte), epochs, args.seed, limit=args.limit)
        path = os.path.join(args.out, name + ".onnx")
        m = export(model, path, spec["keep_bn"])
        ops, err = check_export(model, m, xte, spec["keep_bn"])
        span = batchnorm_scale_span(m)
        entry = {
            "name": name,
            "file": name + ".onnx",
            "top1": round(top1, 4),
            "params": onnx_float_params(m),
            "macs": count_macs(model),
            "torch_params": int(sum(p.numel() for p in model.parameters())),
            "keeps_batchnorm": "BatchNormalization" in ops,
            "ops": ops,
            "mean": MEAN,
            "std": STD,
            "epochs": epochs,
            "seed": args.seed,
            "train_images": min(len(xtr), args.limit or len(xtr)),
            "arch": spec["arch"],
            "file_bytes": os.path.getsize(path),
            "max_abs_err_vs_torch": float("%.3g" % err),
        }
        if span:
            entry["batchnorm_scale_span"] = round(span, 1)
        if "min_bn_scale_span" in spec:
            assert span >= spec["min_bn_scale_span"], "BN scale span %.1f" % span
        assert entry["file_bytes"] < 2 * 1024 * 1024
        entries[name] = entry
        print("   %s: top1 %.4f, onnx params %d, %d bytes, ops %s, export err %.2g (%.0fs)"
              % (name, top1, entry["params"], entry["file_bytes"], ",".join(ops), err,
                 time.time() - t0), flush=True)
    print("total %.0fs" % (time.time() - t_all))

    if not args.no_write_json:
        ordered = [entries[n] for n in FIXTURES if n in entries]
        ordered += [e for n, e in entries.items() if n not in FIXTURES]
        with open(json_path, "w") as f:
            json.dump(ordered, f, indent=2)
            f.write("\n")
        write_readme(ordered, os.path.join(args.out, "README.md"))
        print("wrote %s and README.md" % json_path)


if __name__ == "__main__":
    main()
