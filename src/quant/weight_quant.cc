#include <algorithm>
#include <cmath>

#include "nncompress/ir/weight_layout.h"
#include "nncompress/quant/balanced_rounding.h"
#include "quantize_internal.h"

namespace nnc::quant {

// Axis of the weight that indexes output channels, or -1 when the layer cannot take a quantized
// weight.
int outputChannelAxis(const Node& n) {
  const Tensor* w = constantFloat32(n.input(1));
  if (w == nullptr || !isQuantizableOp(n)) return -1;
  const auto layout = weightLayout(n);
  return layout->fitsRank(w->rank()) ? layout->out_axis : -1;
}

// Axis along which a weight's input features run (the reduction axis).
int inputAxis(const Node& n) { return weightLayout(n)->in_axis; }

// int8 (per-channel or per-tensor) symmetric weights behind a DequantizeLinear.
WeightQuant quantizeWeightInt8(Graph& g, Node& layer, int axis, bool per_channel, int bits,
                               bool balanced, const std::string& base) {
  const Tensor& w = *constantFloat32(layer.input(1));
  const int64_t channels = per_channel ? w.dim(axis) : 1;
  int64_t inner = 1;
  for (int d = axis + 1; d < w.rank(); ++d) inner *= w.dim(d);
  const int64_t outer = w.numel() / (w.dim(axis) * inner);
  const auto wd = w.data<float>();
  const int qmax = (1 << (bits - 1)) - 1;
  std::vector<float> amax(channels, 0.f);
  for (int64_t i = 0; i < w.numel(); ++i) {
    const int64_t c = per_channel ? (i / inner) % w.dim(axis) : 0;
    amax[c] = std::max(amax[c], std::abs(wd[i]));
  }
  std::vector<float> scale(channels);
  for (int64_t c = 0; c < channels; ++c) scale[c] = amax[c] > 0 ? amax[c] / qmax : 1.f;
  Tensor q(DType::kInt8, w.shape());
  const std::vector<int> ints = roundWeights(
      wd, scale, [&](int64_t i) { return per_channel ? (i / inner) % w.dim(axis) : 0; }, qmax,
      balanced);
  std::copy(ints.begin(), ints.end(), q.mutableData<int8_t>().begin());
  (void)outer;
  Value* qv = g.addInitializer(base + "_q", std::move(q));
  Tensor s = per_channel ? Tensor::fromVector<float>({channels}, scale)
                         : Tensor::fromVector<float>({}, {scale[0]});
  // No zero point: symmetric weights (the input's int8 type says how to read them).
  Value* sv = g.addInitializer(base + "_s", std::move(s));
  Node* dq = g.addNode("DequantizeLinear", {qv, sv}, {base + "_dq"});
  if (per_channel) dq->setAttribute(Attribute::makeInt("axis", axis));
  setType(dq->output(0), DType::kFloat32, layer.input(1));
  const auto [mn, mx] = std::minmax_element(scale.begin(), scale.end());
  return {dq->output(0), *mn, *mx};
}

// int4 symmetric weights with one scale per output channel (opset 21 per-axis DequantizeLinear):
// used when a layer's whole reduction fits in one block.
WeightQuant quantizeWeightPerChannelInt4(Graph& g, Node& layer, bool balanced,
                                         const std::string& base) {
  const Tensor& w = *constantFloat32(layer.input(1));
  const int axis = outputChannelAxis(layer);
  int64_t inner = 1;
  for (int d = axis + 1; d < w.rank(); ++d) inner *= w.dim(d);
  const int64_t channels = w.dim(axis);
  const auto wd = w.data<float>();
  std::vector<float> scale(channels, 0.f);
  for (int64_t i = 0; i < w.numel(); ++i) {
    const int64_t c = (i / inner) % channels;
    scale[c] = std::max(scale[c], std::abs(wd[i]));
  }
  for (float& s : scale) s = s > 0 ? s / 7.f : 1.f;
  Tensor q(DType::kInt4, w.shape());
  const std::vector<int> ints = roundWeights(
      wd, scale, [&](int64_t i) { return (i / inner) % channels; }, 7, balanced);
  for (int64_t i = 0; i < w.numel(); ++i) setPackedNibble(q.mutableBytes(), i, ints[i]);
  Value* qv = g.addInitializer(base + "_q", std::move(q));
  const auto [mn, mx] = std::minmax_element(scale.begin(), scale.end());
  WeightQuant out{nullptr, *mn, *mx};
  Value* sv = g.addInitializer(base + "_s", Tensor::fromVector<float>({channels}, scale));
  Node* dq = g.addNode("DequantizeLinear", {qv, sv}, {base + "_dq"});
  dq->setAttribute(Attribute::makeInt("axis", axis));
  setType(dq->output(0), DType::kFloat32, layer.input(1));
  out.dequantized = dq->output(0);
  return out;
}

// int4 symmetric weights, blocked along the input axis (opset 21 DequantizeLinear block_size).
// Conv weights [O, I, kh, kw] are stored as [O, I*kh*kw] so blocks run over the whole reduction
// and reshaped back after dequantization.
WeightQuant quantizeWeightInt4(Graph& g, Node& layer, int64_t block_size, bool balanced,
                               const std::string& base) {
  const Tensor& w = *constantFloat32(layer.input(1));
  Shape shape2d;
  int axis;  // blocked axis of the 2-D form
  if (layer.isOp("Conv")) {
    shape2d = {w.dim(0), w.numel() / w.dim(0)};
    axis = 1;
  } else {
    shape2d = w.shape();
    axis = inputAxis(layer);
  }
  const int64_t rows = shape2d[0], cols = shape2d[1];
  const int64_t k = shape2d[axis];
  // Blocks of about block_size that split the reduction evenly: round(k / block_size) of them,
  // one per output channel (no blocking) when that is 1, so a reduction slightly longer than
  // a block does not pay a whole scale per channel for a short tail block.
  const int64_t wanted = std::max<int64_t>(1, (k + block_size / 2) / block_size);
  if (wanted == 1) return quantizeWeightPerChannelInt4(g, layer, balanced, base);
  block_size = (k + wanted - 1) / wanted;
  const int64_t blocks = (k + block_size - 1) / block_size;
  Shape scale_shape = shape2d;
  scale_shape[axis] = blocks;
  const auto wd = w.data<float>();
  auto blockOf = [&](int64_t r, int64_t c) {
    return axis == 1 ? r * blocks + c / block_size : (r / block_size) * cols + c;
  };
  std::vector<float> scale(shapeNumel(scale_shape), 0.f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      scale[blockOf(r, c)] = std::max(scale[blockOf(r, c)], std::abs(wd[r * cols + c]));
  for (float& s : scale) s = s > 0 ? s / 7.f : 1.f;
  Tensor q(DType::kInt4, shape2d);
  const std::vector<int> ints = roundWeights(
      wd, scale, [&](int64_t i) { return blockOf(i / cols, i % cols); }, 7, balanced);
  for (int64_t i = 0; i < rows * cols; ++i) setPackedNibble(q.mutableBytes(), i, ints[i]);
  Value* qv = g.addInitializer(base + "_q", std::move(q));
  const auto [mn, mx] = std::minmax_element(scale.begin(), scale.end());
  WeightQuant out{nullptr, *mn, *mx};
  Value* sv = g.addInitializer(base + "_s", Tensor::fromVector<float>(scale_shape, scale));
  Node* dq = g.addNode("DequantizeLinear", {qv, sv}, {base + "_dq"});
  dq->setAttribute(Attribute::makeInt("axis", axis));
  dq->setAttribute(Attribute::makeInt("block_size", block_size));
  setType(dq->output(0), DType::kFloat32, nullptr);
  out.dequantized = dq->output(0);
  if (layer.isOp("Conv")) {
    Value* shape = g.addInitializer(base + "_shape",
                                    Tensor::fromVector<int64_t>({int64_t(w.rank())}, w.shape()));
    Node* reshape = g.addNode("Reshape", {dq->output(0), shape}, {base + "_r"});
    setType(reshape->output(0), DType::kFloat32, layer.input(1));
    out.dequantized = reshape->output(0);
  }
  return out;
}

}  // namespace nnc::quant
