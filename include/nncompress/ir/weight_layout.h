#pragma once
// One table of how layers store their weights: which input is the weight, which of its axes
// indexes output channels and which input channels, how `group` splits them, and which
// attribute transposes it. The channel rules, quantization, BatchNorm folding, the write gate's
// channel check and recovery read it instead of re-deriving it.
//   Conv, ConvInteger, QLinearConv  W [M, C/group, k...]   out axis 0, in axis 1 (per group)
//   ConvTranspose                   W [C, M/group, k...]   out axis 1 (per group), in axis 0
//   Gemm                            B [K, N]; transB: [N, K]  out axis 1 (0), in axis 0 (1);
//                                   transA reads A as [K, M]: A's feature axis is 0
//   MatMul (constant B)             B [K, N]                out axis 1, in axis 0

#include <cstdint>
#include <optional>
#include <string_view>

#include "nncompress/ir/graph.h"

namespace nnc {

// Which channel axis of the weight `group` splits.
enum class GroupedAxis { kNone, kInput, kOutput };

// The layout of one node's weight (attributes resolved).
struct WeightLayout {
  int data_input = 0;  // the activation the weight multiplies
  int weight_input = 1;
  int bias_input = -1;        // -1: no bias input
  int out_axis = 0;           // weight axis of the output channels
  int in_axis = 1;            // weight axis of the input channels
  int data_channel_axis = 1;  // axis of the data input holding its channels (-1: the last)
  int64_t group = 1;          // the node's `group` (1 for Gemm and MatMul)
  GroupedAxis grouped = GroupedAxis::kNone;  // the axis that holds channels/group only
  bool matrix = false;                       // weight is 2-D (Gemm, MatMul); else rank >= 3

  // Output / input channels of the layer for weight shape `w` (grouped axes times group).
  int64_t outputChannels(const Shape& w) const;
  int64_t inputChannels(const Shape& w) const;
  // Whether `w` has the rank the layout needs (2 for matrices, at least 3 for convolutions).
  bool fitsRank(size_t rank) const { return matrix ? rank == 2 : rank >= 3; }

  // Calls f(output channel, input channel, flat index) for every element of a weight of shape
  // `w` (channels in the layer's numbering: a grouped axis's index is offset by its group).
  template <typename F>
  void forEachElement(const Shape& w, F f) const;
};

// A row of the table: the layout before attributes (Gemm as if transA = transB = 0, group 1),
// and the attributes that change it. The channel rules declare their weight couplings from it.
struct OpWeightLayout {
  const char* op;
  WeightLayout layout;
  const char* weight_transpose_attr = nullptr;  // non-zero: out and in axes swap (Gemm transB)
  const char* data_transpose_attr = nullptr;    // non-zero: the data's channel axis is 0 (transA)
  const char* group_attr = nullptr;             // multiplies the grouped axis (`group`)
};
// The row of default-domain op `op`, or nullptr.
const OpWeightLayout* opWeightLayout(std::string_view op);

// The weight layout of `n`, or nullopt when its op has none in the table (or it is not in the
// default domain).
std::optional<WeightLayout> weightLayout(const Node& n);

template <typename F>
void WeightLayout::forEachElement(const Shape& w, F f) const {
  const int64_t a0 = w[0], a1 = w[1], inner = shapeNumel(w) / std::max<int64_t>(1, a0 * a1);
  // Per-group lengths of the two leading axes' partners: element [i, j] of group g = i / (a0/g).
  const int64_t lead_per_group = a0 / std::max<int64_t>(1, group);
  for (int64_t i = 0; i < a0; ++i)
    for (int64_t j = 0; j < a1; ++j) {
      // The grouped axis is axis 1 (Conv: inputs; ConvTranspose: outputs), indexed within the
      // group of the axis-0 channel.
      const int64_t j_global = grouped != GroupedAxis::kNone ? (i / lead_per_group) * a1 + j : j;
      const int64_t out = out_axis == 0 ? i : j_global, in = in_axis == 0 ? i : j_global;
      for (int64_t s = 0; s < inner; ++s) f(out, in, (i * a1 + j) * inner + s);
    }
}

}  // namespace nnc
