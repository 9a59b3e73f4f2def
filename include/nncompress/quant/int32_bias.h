#pragma once
// The int32 bias of an integer layer (QLinearConv, QGemm, or a QDQ Conv ONNX Runtime fuses):
//   b_q[c] = round(b[c] / (s_x s_w[c])), zero point 0, read with scale s_x s_w[c].
// A tiny s_x s_w[c] (a channel whose weights are all tiny next to its bias) would overflow int32.
// Then that channel's weight scale is raised to |b[c]| / (s_x kInt32BiasLimit): its weights get a
// coarser step, the bias stays within its own step, nothing overflows and nothing is dropped.
// kInt32BiasLimit = 2^30 leaves the other half of int32 to the accumulator (|sum| <= K 255 127).

#include <span>
#include <vector>

#include "nncompress/ir/tensor.h"

namespace nnc::quant {

inline constexpr double kInt32BiasLimit = double(1 << 30);

// Raises `weight_scales` (one per channel, or one for all) where the bias needs it; returns the
// number of scales raised.
int raiseWeightScalesForInt32Bias(std::span<const float> bias, float input_scale,
                                  std::vector<float>& weight_scales);

// b_q as an int32 tensor of shape [channels] (clamped to +-kInt32BiasLimit; after
// raiseWeightScalesForInt32Bias nothing is clamped).
Tensor quantizeBiasInt32(std::span<const float> bias, float input_scale,
                         std::span<const float> weight_scales);

}  // namespace nnc::quant
