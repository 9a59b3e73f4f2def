#pragma once
// Makes an exported model small without changing what it computes. On small CNNs the graph
// structure (long exporter names such as "/blocks/blocks.3/block/block.6/fc1/Conv_output_0",
// one Constant node per Clip bound, duplicated scales) is 10-20% of a quantized file.
//
//   Constant(value = t) -> y             becomes an initializer y = t
//   initializers with equal dtype, shape and bytes  become one (Clip bounds, activation scales
//                                        and zero points calibrated to the same range, ...)
//   Conv / QLinearConv attributes equal to their ONNX default (strides 1, dilations 1, pads 0,
//   group 1, kernel_shape = the weight's spatial dims), Gemm's alpha/beta 1 and transA/transB 0,
//   Flatten's axis 1 are dropped
//   node names and doc strings are dropped; internal values get short generated names
//   ("0", "1", ..., base 36) in graph order. Graph inputs and outputs keep their names.
//   float32 biases, per-channel Mul/Add vectors and weight scales (>= 8 values) are stored as
//   float16 and cast back to float32 in the graph (their rounding, relative 2^-11, is far below
//   the int8/int4 steps next to them)
//   the int8 weight of a layer with a float input (no DequantizeLinear before it) is read through
//   Cast + Mul(scale) instead of DequantizeLinear: the same values, which ONNX Runtime folds into
//   a float weight at session start instead of dequantizing it on every run
//   an int32 bias behind DequantizeLinear(b_q, s_x s_w) (--qdq-placement ort) stores its scale as
//   Mul(s_x, s_w) of the layer's other two scales and its values as int16 + Cast when they fit
// `keep_names` keeps node and value names (and doc strings); the other steps still apply.
// Nothing is renamed when a node carries a subgraph (its body refers to outer names).

#include "nncompress/ir/graph.h"

namespace nnc::quant {

struct CompactOptions {
  bool keep_names = false;
  // Biases, BatchNorm-derived per-channel vectors and weight scales stored as float16 + Cast
  // (see halfPrecisionStorage in compact.cc).
  bool float16_storage = true;
};

struct CompactStats {
  int constants_to_initializers = 0;
  int initializers_shared = 0;  // duplicates removed
  int attributes_dropped = 0;
  int values_renamed = 0;
  int stored_as_float16 = 0;
  int int32_biases_compacted = 0;  // scale as Mul(s_x, s_w) and/or values as int16 + Cast
  int weights_cast_mul = 0;        // int8 weights of float-input layers as Cast + Mul
};

StatusOr<CompactStats> compactModel(Model& model, const CompactOptions& options = {});

}  // namespace nnc::quant
