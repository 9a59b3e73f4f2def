#include "nncompress/quant/int32_bias.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace nnc::quant {
namespace {

float scaleOf(std::span<const float> scales, size_t c) {
  return scales.size() == 1 ? scales[0] : scales[c];
}

}  // namespace

int raiseWeightScalesForInt32Bias(std::span<const float> bias, float input_scale,
                                  std::vector<float>& weight_scales) {
  std::vector<bool> raised(weight_scales.size(), false);
  for (size_t c = 0; c < bias.size(); ++c) {
    const size_t s = weight_scales.size() == 1 ? 0 : c;
    if (s >= weight_scales.size()) break;
    const double needed = std::abs(double(bias[c])) / (double(input_scale) * kInt32BiasLimit);
    if (double(weight_scales[s]) >= needed) continue;
    // The next float up from `needed`, so the division below stays within the limit.
    weight_scales[s] = std::nextafter(float(needed), std::numeric_limits<float>::infinity());
    raised[s] = true;
  }
  return int(std::count(raised.begin(), raised.end(), true));
}

Tensor quantizeBiasInt32(std::span<const float> bias, float input_scale,
                         std::span<const float> weight_scales) {
  Tensor out(DType::kInt32, {int64_t(bias.size())});
  auto q = out.mutableData<int32_t>();
  for (size_t c = 0; c < bias.size(); ++c) {
    const double step = double(input_scale) * double(scaleOf(weight_scales, c));
    const double v = step > 0 ? std::nearbyint(double(bias[c]) / step) : 0.0;
    q[c] = int32_t(std::clamp(v, -kInt32BiasLimit, kInt32BiasLimit));
  }
  return out;
}

}  // namespace nnc::quant
