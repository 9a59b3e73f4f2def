#!/usr/bin/env python3
"""Exports small text classifiers (seeded random weights) with Debian's python3-torch, and token
data for them, for bench/text_models.py: models users bring that take token ids, one of them also
an attention mask.

  /usr/bin/python3 tools/export_text_models.py --out DIR

Writes DIR/encoder.onnx (input_ids [N, T] -> 2 Transformer encoder layers, d 128, 4 heads, word
and position embeddings of 8000 and 64 rows -> mean over tokens -> 5 logits), DIR/masked.onnx (the
same with attention_mask [N, T]: padded tokens ignored by attention and by the mean),
DIR/ids.npy (int64 [512, 16]) and DIR/mask.npy (int64 [512, 16]: 1 for the first 4..16 tokens).
Dynamic N and T. Nothing is downloaded.
"""
import argparse
import os

import numpy as np
import torch
import torch.nn as nn

VOCAB, DIM, HEADS, POSITIONS, CLASSES = 8000, 128, 4, 64, 5
SAMPLES, TOKENS = 512, 16


class Encoder(nn.Module):
    def __init__(self, masked):
        super().__init__()
        self.masked = masked
        self.words = nn.Embedding(VOCAB, DIM)
        self.positions = nn.Embedding(POSITIONS, DIM)
        layer = nn.TransformerEncoderLayer(DIM, HEADS, 2 * DIM, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2)
        # TransformerEncoder deep-copies one layer: draw each layer's weights anew, or the
        # exporter shares the equal tensors between layers, which a trained model never does.
        for copy in self.encoder.layers:
            for m in copy.modules():
                if isinstance(m, nn.MultiheadAttention):
                    m._reset_parameters()
                elif isinstance(m, (nn.Linear, nn.LayerNorm)):
                    m.reset_parameters()
                if isinstance(m, nn.LayerNorm):  # unit gains: perturb so layers differ
                    with torch.no_grad():
                        m.weight.add_(0.1 * torch.randn_like(m.weight))
                        m.bias.add_(0.1 * torch.randn_like(m.bias))
        self.head = nn.Linear(DIM, CLASSES)

    def forward(self, ids, mask=None):
        positions = torch.arange(ids.shape[1]).unsqueeze(0)
        h = self.words(ids) + self.positions(positions)
        if mask is None:
            return self.head(self.encoder(h).mean(1))
        h = self.encoder(h, src_key_padding_mask=mask == 0)
        keep = mask.unsqueeze(-1).float()
        return self.head((h * keep).sum(1) / keep.sum(1))


def export(model, args, names, path):
    dynamic = {n: {0: "N", 1: "T"} for n in names}
    dynamic["logits"] = {0: "N"}
    torch.onnx.export(model, args, path, opset_version=14, input_names=names,
                      output_names=["logits"], dynamic_axes=dynamic)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.RandomState(0)
    ids = rng.randint(1, VOCAB, (SAMPLES, TOKENS)).astype(np.int64)
    lengths = rng.randint(4, TOKENS + 1, SAMPLES)
    mask = (np.arange(TOKENS)[None, :] < lengths[:, None]).astype(np.int64)
    ids = ids * mask  # padding id 0
    np.save(os.path.join(a.out, "ids.npy"), ids)
    np.save(os.path.join(a.out, "mask.npy"), mask)
    sample = torch.from_numpy(ids[:2])
    for name, masked in (("encoder", False), ("masked", True)):
        torch.manual_seed(0)
        model = Encoder(masked).eval()
        if masked:
            export(model, (sample, torch.from_numpy(mask[:2])), ["input_ids", "attention_mask"],
                   os.path.join(a.out, name + ".onnx"))
        else:
            export(model, (sample,), ["input_ids"], os.path.join(a.out, name + ".onnx"))
    print(a.out)


if __name__ == "__main__":
    main()
