#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "nncompress/ir/option_error.h"
#include "nncompress/ir/weight_layout.h"
#include "nncompress/quant/int32_bias.h"
#include "quantize_internal.h"

namespace nnc::quant {
namespace {

std::optional<float> constScalar(const Value* v) {
  const Tensor* t = constantFloat32(v);
  if (t == nullptr || t->numel() != 1) return std::nullopt;
  return t->data<float>()[0];
}

// The Relu or Clip(0, M) reading a Conv's output that its QLinearConv can absorb (see
// writeQOperatorLayer), or nullptr.
Node* fusableActivation(const Node& conv, const std::map<std::string, Range>& ranges,
                        const QuantizeOptions& options) {
  const Value* y = conv.output(0);
  if (options.symmetric_activations || y->uses().size() != 1 || y->isGraphOutput()) return nullptr;
  Node* act = y->uses()[0].node;
  if (act->output(0) == nullptr || act->output(0)->isGraphOutput()) return nullptr;
  float upper = std::numeric_limits<float>::infinity();
  if (act->isOp("Clip")) {
    if (act->numInputs() < 3) return nullptr;
    const auto lo = constScalar(act->input(1)), hi = constScalar(act->input(2));
    if (!lo || !hi || *lo != 0.f) return nullptr;
    upper = *hi;
  } else if (!act->isOp("Relu")) {
    return nullptr;
  }
  auto r = ranges.find(act->output(0)->name());
  if (r == ranges.end() || r->second.lo < 0 || r->second.hi > upper) return nullptr;
  if (chooseQParams(r->second, false, 8).zero_point != 0) return nullptr;
  return act;
}

// Weight with the output channel on axis 0 (Conv) or 1 (MatMul's [K, N]).
Tensor outputChannelWeight(const Node& n) {
  Tensor w = *constantFloat32(n.input(1));
  if (weightLayout(n)->out_axis == 0 && !n.isOp("Conv")) {  // Gemm transB: [N, K] -> [K, N]
    Tensor wt(DType::kFloat32, {w.dim(1), w.dim(0)});
    for (int64_t r = 0; r < w.dim(0); ++r)
      for (int64_t c = 0; c < w.dim(1); ++c)
        wt.mutableData<float>()[c * w.dim(0) + r] = w.data<float>()[r * w.dim(1) + c];
    w = std::move(wt);
  }
  return w;
}

// A QOperator layer's weight as int8 symmetric, with one scale per output channel (repeated
// when per-tensor).
struct QOperatorWeight {
  Tensor q;
  std::vector<float> scale;
  int64_t channels = 0;
};

QOperatorWeight quantizeQOperatorWeight(const Node& n, const QuantTarget& t, float in_scale,
                                        const QuantizeOptions& options) {
  const Tensor w = outputChannelWeight(n);
  const int axis = n.isOp("Conv") ? 0 : 1;
  const int64_t channels = w.dim(axis);
  int64_t inner = 1;
  for (int d = axis + 1; d < w.rank(); ++d) inner *= w.dim(d);
  std::vector<float> scale(channels, 0.f);
  const auto wd = w.data<float>();
  for (int64_t i = 0; i < w.numel(); ++i) {
    const int64_t c = options.per_channel ? (i / inner) % channels : 0;
    scale[c] = std::max(scale[c], std::abs(wd[i]));
  }
  if (!options.per_channel) std::fill(scale.begin(), scale.end(), scale[0]);
  for (float& v : scale) v = v > 0 ? v / 127.f : 1.f;
  // The int32 bias b / (s_x s_w) must fit: raise the scales of channels where it would not.
  if (const Tensor* b = constantFloat32(n.input(2)); b && n.isOp("Conv") && b->numel() == channels)
    if (const int raised = raiseWeightScalesForInt32Bias(b->data<float>(), in_scale, scale))
      spdlog::info("{}: raised {} weight scale(s) so the int32 bias stays below 2^30", t.name,
                   raised);
  Tensor wq(DType::kInt8, w.shape());
  for (int64_t i = 0; i < w.numel(); ++i)
    wq.mutableData<int8_t>()[i] =
        int8_t(std::clamp<float>(std::nearbyint(wd[i] / scale[(i / inner) % channels]), -127, 127));
  return {std::move(wq), std::move(scale), channels};
}

// The QLinearConv / QLinearMatMul of layer `n` and its constants; its output is the integer y.
Node* addQLinearNode(Graph& g, const Node& n, const QuantTarget& t, const ActQuant& in,
                     QOperatorWeight& weight, const QParams& yq, const QuantizeOptions& options,
                     Value*& ys, Value*& yz) {
  const std::string base = n.input(1)->name();
  Value* wv = g.addInitializer(base + "_q", std::move(weight.q));
  Value* ws =
      g.addInitializer(base + "_s", Tensor::fromVector<float>({weight.channels}, weight.scale));
  // One scalar zero point (symmetric weights): QLinearConv / QLinearMatMul take a scalar or one
  // per channel, and a scalar costs 1 byte instead of one per output channel.
  Value* wz = g.addInitializer(base + "_z", Tensor(DType::kInt8, {}));
  const std::string ybase = t.name + "_quant";
  ys = g.addInitializer(ybase + "_s", Tensor::fromVector<float>({}, {yq.scale}));
  Tensor yzt = options.symmetric_activations ? Tensor(DType::kInt8, {}) : Tensor(DType::kUInt8, {});
  if (!options.symmetric_activations) yzt.mutableData<uint8_t>()[0] = uint8_t(yq.zero_point);
  yz = g.addInitializer(ybase + "_z", std::move(yzt));
  const Tensor* bias = constantFloat32(n.input(2));
  Node* qnode;
  if (n.isOp("Conv")) {
    std::vector<Value*> inputs = {in.quantized, in.scale, in.zero_point, wv, ws, wz, ys, yz};
    if (bias != nullptr) {
      inputs.push_back(g.addInitializer(
          base + "_bias_q", quantizeBiasInt32(bias->data<float>(), in.params.scale, weight.scale)));
    }
    qnode = g.addNode("QLinearConv", inputs, {ybase + "_y"});
    for (const Attribute& a : n.attributes()) qnode->setAttribute(a);
  } else {
    qnode = g.addNode("QLinearMatMul", {in.quantized, in.scale, in.zero_point, wv, ws, wz, ys, yz},
                      {ybase + "_y"});
  }
  qnode->setName(t.name + "_quant");
  setType(qnode->output(0), options.symmetric_activations ? DType::kInt8 : DType::kUInt8,
          n.output(0));
  return qnode;
}

}  // namespace

// QOperator: Conv -> QLinearConv, MatMul / Gemm (no transA, alpha 1) -> QLinearMatMul (+ Add of
// the float bias), each between a shared QuantizeLinear of its input and a DequantizeLinear of
// its output (which takes over the float output's name so every reader stays as it was).
// Weights int8 symmetric per output channel, Conv bias int32 with scale s_x * s_w[c].
StatusOr<QuantizedLayer> writeQOperatorLayer(Graph& g, const QuantTarget& t,
                                             const std::map<std::string, Range>& ranges,
                                             const QuantizeOptions& options,
                                             std::map<std::string, ActQuant>& made) {
  Node& n = *t.node;
  if (n.isOp("Gemm") && (n.intAttr("transA", 0) || n.floatAttr("alpha", 1.f) != 1.f ||
                         n.floatAttr("beta", 1.f) != 1.f))
    return unsupportedOption("format", "the qoperator format cannot hold Gemm '" + t.name +
                                           "' with transA/alpha/beta (the qdq format can)");
  NNC_ASSIGN_OR_RETURN(ActQuant in,
                       activationQdq(g, t.activation_inputs[0], ranges, options, made));
  Value* y = n.output(0);
  // A Relu / Clip(0, M) after a QLinearConv folds into its output quantization when the
  // activation's calibrated range starts at 0 (zero point 0) and ends at or below M: saturation to
  // [0, 255] then clips exactly as the activation did, and the next layer reads the integer output
  // directly (no DequantizeLinear -> Clip -> QuantizeLinear).
  Node* fused = n.isOp("Conv") ? fusableActivation(n, ranges, options) : nullptr;
  const std::string y_name = fused ? fused->output(0)->name() : y->name();
  auto yr = ranges.find(y_name);
  if (yr == ranges.end()) return internalError("no calibration range for output of " + t.name);
  const QParams yq = chooseQParams(yr->second, options.symmetric_activations, 8);
  QOperatorWeight weight = quantizeQOperatorWeight(n, t, in.params.scale, options);
  const bool conv = n.isOp("Conv");
  Value *ys = nullptr, *yz = nullptr;
  Node* qnode = addQLinearNode(g, n, t, in, weight, yq, options, ys, yz);
  const std::string ybase = t.name + "_quant";
  Node* dq = g.addNode("DequantizeLinear", {qnode->output(0), ys, yz}, {ybase + "_dq"});
  setType(dq->output(0), DType::kFloat32, y);
  Value* result = dq->output(0);
  if (const Tensor* bias = constantFloat32(n.input(2)); !conv && bias != nullptr) {
    Value* b = g.addInitializer(n.input(1)->name() + "_bias", *bias);
    Node* add = g.addNode("Add", {result, b}, {ybase + "_biased"});
    setType(add->output(0), DType::kFloat32, y);
    result = add->output(0);
  }
  if (fused) {
    g.replaceAllUsesWith(fused->output(0), result);
    g.eraseNode(fused);
  }
  g.replaceAllUsesWith(y, result);
  // A quantized layer reading this output (Conv -> Conv without an activation in between) takes
  // the integer output directly: no DequantizeLinear -> QuantizeLinear round trip.
  made[y_name] = ActQuant{qnode->output(0), dq->output(0), ys, yz, yq};
  Value* old_w = n.input(1);
  Value* old_b = n.input(2);
  g.eraseNode(&n);
  for (Value* v : {old_w, old_b})
    if (v && !v->hasUses() && v->isInitializer() && !v->isGraphInput()) g.eraseValue(v);
  QuantizedLayer info{t.name,        conv ? "QLinearConv" : "QLinearMatMul", 8, 8, 0, 0, 0, y_name,
                      result->name()};
  const auto [mn, mx] = std::minmax_element(weight.scale.begin(), weight.scale.end());
  info.weight_scale_min = *mn;
  info.weight_scale_max = *mx;
  info.act_scale = in.params.scale;
  return info;
}

}  // namespace nnc::quant
