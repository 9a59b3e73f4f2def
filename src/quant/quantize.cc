#include "nncompress/quant/quantize.h"

#include "nncompress/quant/balanced_rounding.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <set>

#include "nncompress/exec/executor.h"
#include "nncompress/ir/batch_norm.h"
#include "nncompress/quant/int32_bias.h"
#include "nncompress/quant/integer_fold.h"

namespace nnc::quant {
namespace {

bool isQuantizableOp(const Node& n) { return n.isOp("Conv") || n.isOp("Gemm") || n.isOp("MatMul"); }

std::string displayName(const Node& n) { return n.name().empty() ? n.output(0)->name() : n.name(); }

// Axis of the weight that indexes output channels, or -1 when the layer cannot take a quantized
// weight.
int outputChannelAxis(const Node& n) {
  const Tensor* w = constantFloat32(n.input(1));
  if (w == nullptr) return -1;
  if (n.isOp("Conv")) return w->rank() >= 3 ? 0 : -1;
  if (n.isOp("Gemm")) return w->rank() == 2 ? (n.intAttr("transB", 0) ? 0 : 1) : -1;
  if (n.isOp("MatMul")) return w->rank() == 2 ? 1 : -1;
  return -1;
}

// Axis along which a weight's input features run (the reduction axis).
int inputAxis(const Node& n) {
  if (n.isOp("Conv")) return 1;
  if (n.isOp("Gemm")) return n.intAttr("transB", 0) ? 1 : 0;
  return 0;  // MatMul [K, N]
}

void setType(Value* v, DType dtype, const Value* like) {
  ValueType t = like ? like->type() : ValueType{};
  t.dtype = dtype;
  v->setType(t);
}

struct WeightQuant {
  Value* dequantized = nullptr;
  float scale_min = 0, scale_max = 0;
};

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

// Ops that change meaning between opset 17 and 21 when only the version number is raised
// (onnx/docs/Changelog.md): Reduce* (not ReduceSum) take axes as an input from 18, GridSample's
// modes were renamed in 20, DFT takes its axis as an input from 20, GroupNormalization's scale
// and bias became per channel in 21. Everything else in 18-21 only adds types or attributes
// whose defaults keep the old meaning.
bool blocksOpsetUpgrade(const Node& n) {
  static const std::set<std::string> kAxesAttribute = {
      "ReduceMean", "ReduceMax",    "ReduceMin",       "ReduceProd",     "ReduceL1",
      "ReduceL2",   "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"};
  static const std::set<std::string> kChanged = {"DFT", "GroupNormalization"};
  if (!n.isDefaultDomain()) return false;
  if (kAxesAttribute.count(n.opType())) return n.hasAttribute("axes");
  if (n.isOp("GridSample")) {
    const std::string mode = n.stringAttr("mode", "bilinear");
    return mode == "bilinear" || mode == "bicubic";  // "linear" / "cubic" from opset 20
  }
  return kChanged.count(n.opType()) > 0;
}

// The opset the version converter (libonnx 1.12) reaches; beyond it int4 is a version bump.
constexpr int64_t kConverterOpset = 17;

// Opset changes below 17 go through ONNX's version converter, which rebuilds the model (so the
// caller converts before choosing targets: `nncompress convert`, convertModelOpset); here the
// model must already be there. int4 needs 21, which the converter cannot reach: 17 -> 21 is a
// plain version bump, refused when a node would change meaning (blocksOpsetUpgrade), with IR 10
// (the first with int4).
Status requireOpset(Model& model, int64_t needed, const std::string& why) {
  const int64_t have = model.opsetVersion("");
  if (have >= needed) return Status::ok();
  const int64_t floor = needed > kConverterOpset ? kConverterOpset : needed;
  if (have < floor)
    return unsupported("the model's opset " + std::to_string(have) + " is below " +
                       std::to_string(floor) + "; " + why + " needs opset " +
                       std::to_string(needed) + " (convert it first with ONNX's version " +
                       "converter: convertModelOpset, or `nncompress convert --opset " +
                       std::to_string(floor) + "`)");
  for (const auto& n : model.graph->nodes())
    if (blocksOpsetUpgrade(*n))
      return unsupported(why + " needs opset " + std::to_string(needed) + " but node '" +
                         displayName(*n) + "' (" + n->opType() +
                         ") would change meaning when the opset is raised");
  for (auto& o : model.opset_imports)
    if (o.domain.empty() || o.domain == "ai.onnx") o.version = needed;
  if (needed >= 21) model.ir_version = std::max<int64_t>(model.ir_version, 10);
  spdlog::debug("raised the model's opset from {} to {} ({})", have, needed, why);
  return Status::ok();
}

struct ActQuant {
  Value* quantized = nullptr;    // QuantizeLinear output
  Value* dequantized = nullptr;  // DequantizeLinear output
  Value* scale = nullptr;
  Value* zero_point = nullptr;
  QParams params;
};

// Clip(x, s (qmin - z), s (qmax - z)): values QuantizeLinear maps into [qmin, qmax].
Value* clipToGrid(Graph& g, Value* x, const QParams& p, const std::string& base) {
  const float lo = p.scale * float(p.qmin - p.zero_point);
  const float hi = p.scale * float(p.qmax - p.zero_point);
  Value* lov = g.addInitializer(base + "_lo", Tensor::fromVector<float>({}, {lo}));
  Value* hiv = g.addInitializer(base + "_hi", Tensor::fromVector<float>({}, {hi}));
  Node* clip = g.addNode("Clip", {x, lov, hiv}, {base + "_clip"});
  setType(clip->output(0), DType::kFloat32, x);
  return clip->output(0);
}

// One QuantizeLinear (+ DequantizeLinear) per activation, shared by all its quantized readers.
StatusOr<ActQuant> activationQdq(Graph& g, const std::string& a,
                                 const std::map<std::string, Range>& ranges,
                                 const QuantizeOptions& options,
                                 std::map<std::string, ActQuant>& made) {
  if (auto found = made.find(a); found != made.end()) return found->second;
  auto r = ranges.find(a);
  if (r == ranges.end()) return internalError("no calibration range for activation '" + a + "'");
  ActQuant out;
  out.params = chooseQParams(r->second, options.symmetric_activations, options.act_bits);
  // Short generated names: on small models the names of Q/DQ pairs are a visible share of the
  // file. The QuantizeLinear's input still names the tensor.
  const std::string base = "act" + std::to_string(made.size());
  Value* x = g.findValue(a);
  // k-bit activations in 8-bit storage (QuantizeLinear saturates to the 8-bit range only): a
  // float Clip to the k-bit grid's range first.
  Value* x_in = options.act_bits < 8 ? clipToGrid(g, x, out.params, base) : x;
  out.scale = g.addInitializer(base + "_s", Tensor::fromVector<float>({}, {out.params.scale}));
  Tensor zt = options.symmetric_activations ? Tensor(DType::kInt8, {}) : Tensor(DType::kUInt8, {});
  if (!options.symmetric_activations) zt.mutableData<uint8_t>()[0] = uint8_t(out.params.zero_point);
  out.zero_point = g.addInitializer(base + "_z", std::move(zt));
  Node* q = g.addNode("QuantizeLinear", {x_in, out.scale, out.zero_point}, {base + "_q"});
  setType(q->output(0), options.symmetric_activations ? DType::kInt8 : DType::kUInt8, x);
  out.quantized = q->output(0);
  Node* dq =
      g.addNode("DequantizeLinear", {q->output(0), out.scale, out.zero_point}, {base + "_dq"});
  setType(dq->output(0), DType::kFloat32, x);
  out.dequantized = dq->output(0);
  made.emplace(a, out);
  return out;
}

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
    return unsupported("Gemm '" + t.name + "' with transA/alpha/beta: use --format qdq");
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
  // Weight as int8 with the output channel on axis 0 (Conv) or 1 (MatMul's [K, N]).
  Tensor w = *constantFloat32(n.input(1));
  if (n.isOp("Gemm") && n.intAttr("transB", 0)) {  // [N, K] -> [K, N]
    Tensor wt(DType::kFloat32, {w.dim(1), w.dim(0)});
    for (int64_t r = 0; r < w.dim(0); ++r)
      for (int64_t c = 0; c < w.dim(1); ++c)
        wt.mutableData<float>()[c * w.dim(0) + r] = w.data<float>()[r * w.dim(1) + c];
    w = std::move(wt);
  }
  const bool conv = n.isOp("Conv");
  const int axis = conv ? 0 : 1;
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
    if (const int raised = raiseWeightScalesForInt32Bias(b->data<float>(), in.params.scale, scale))
      spdlog::info("{}: raised {} weight scale(s) so the int32 bias stays below 2^30", t.name,
                   raised);
  Tensor wq(DType::kInt8, w.shape());
  for (int64_t i = 0; i < w.numel(); ++i)
    wq.mutableData<int8_t>()[i] =
        int8_t(std::clamp<float>(std::nearbyint(wd[i] / scale[(i / inner) % channels]), -127, 127));
  const std::string base = n.input(1)->name();
  Value* wv = g.addInitializer(base + "_q", std::move(wq));
  Value* ws = g.addInitializer(base + "_s", Tensor::fromVector<float>({channels}, scale));
  // One scalar zero point (symmetric weights): QLinearConv / QLinearMatMul take a scalar or one
  // per channel, and a scalar costs 1 byte instead of one per output channel.
  Value* wz = g.addInitializer(base + "_z", Tensor(DType::kInt8, {}));
  const std::string ybase = t.name + "_quant";
  Value* ys = g.addInitializer(ybase + "_s", Tensor::fromVector<float>({}, {yq.scale}));
  Tensor yzt = options.symmetric_activations ? Tensor(DType::kInt8, {}) : Tensor(DType::kUInt8, {});
  if (!options.symmetric_activations) yzt.mutableData<uint8_t>()[0] = uint8_t(yq.zero_point);
  Value* yz = g.addInitializer(ybase + "_z", std::move(yzt));
  const Tensor* bias = constantFloat32(n.input(2));
  Node* qnode;
  if (conv) {
    std::vector<Value*> inputs = {in.quantized, in.scale, in.zero_point, wv, ws, wz, ys, yz};
    if (bias != nullptr) {
      inputs.push_back(g.addInitializer(
          base + "_bias_q", quantizeBiasInt32(bias->data<float>(), in.params.scale, scale)));
    }
    qnode = g.addNode("QLinearConv", inputs, {ybase + "_y"});
    for (const Attribute& a : n.attributes()) qnode->setAttribute(a);
  } else {
    qnode = g.addNode("QLinearMatMul", {in.quantized, in.scale, in.zero_point, wv, ws, wz, ys, yz},
                      {ybase + "_y"});
  }
  qnode->setName(t.name + "_quant");
  setType(qnode->output(0), options.symmetric_activations ? DType::kInt8 : DType::kUInt8, y);
  Node* dq = g.addNode("DequantizeLinear", {qnode->output(0), ys, yz}, {ybase + "_dq"});
  setType(dq->output(0), DType::kFloat32, y);
  Value* result = dq->output(0);
  if (!conv && bias != nullptr) {
    Value* b = g.addInitializer(base + "_bias", *bias);
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
  const auto [mn, mx] = std::minmax_element(scale.begin(), scale.end());
  info.weight_scale_min = *mn;
  info.weight_scale_max = *mx;
  info.act_scale = in.params.scale;
  return info;
}

}  // namespace

StatusOr<QuantFormat> parseQuantFormat(const std::string& name) {
  if (name == "qdq") return QuantFormat::kQdq;
  if (name == "qoperator") return QuantFormat::kQOperator;
  if (name == "weights-only") return QuantFormat::kWeightsOnly;
  if (name == "integer") return QuantFormat::kInteger;
  return invalidArgument("unknown --format '" + name +
                         "' (expected qdq, qoperator, weights-only or integer)");
}

const char* quantFormatName(QuantFormat format) {
  switch (format) {
    case QuantFormat::kQdq:
      return "qdq";
    case QuantFormat::kQOperator:
      return "qoperator";
    case QuantFormat::kWeightsOnly:
      return "weights-only";
    case QuantFormat::kInteger:
      return "integer";
  }
  return "?";
}

StatusOr<std::vector<QuantTarget>> selectTargets(const Graph& graph,
                                                 const QuantizeOptions& options) {
  std::set<std::string> exclude(options.exclude.begin(), options.exclude.end());
  std::set<std::string> matched;
  NNC_ASSIGN_OR_RETURN(std::vector<Node*> order, graph.topologicalOrder());
  // A layer is "last" when no quantizable layer reads (transitively) from its output.
  std::map<const Node*, bool> feeds_layer;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    bool any = false;
    for (const Value* out : (*it)->outputs()) {
      if (out == nullptr) continue;
      for (const Use& u : out->uses()) any = any || isQuantizableOp(*u.node) || feeds_layer[u.node];
    }
    feeds_layer[*it] = any;
  }
  std::vector<QuantTarget> targets;
  for (Node* n : order) {
    if (!isQuantizableOp(*n) || outputChannelAxis(*n) < 0) continue;
    const std::string name = displayName(*n);
    if (exclude.count(name) || exclude.count(n->output(0)->name())) {
      matched.insert(exclude.count(name) ? name : n->output(0)->name());
      continue;
    }
    // The last layers (the classifier) keep float activations unless asked; their weights are
    // still stored as int8 (per-channel weight error is small next to activation error there).
    const bool float_activations = !feeds_layer[n] && !options.quantize_last;
    QuantTarget t{n, name, {}};
    if (!float_activations && n->input(0) && n->input(0)->dtype() != DType::kUInt8)
      t.activation_inputs.push_back(n->input(0)->name());
    targets.push_back(std::move(t));
  }
  for (const std::string& e : exclude) {
    if (matched.count(e)) continue;
    bool exists = false;
    for (const auto& n : graph.nodes())
      exists = exists || n->name() == e || (n->output(0) && n->output(0)->name() == e);
    if (!exists) return invalidArgument("--exclude '" + e + "' names no layer of the model");
  }
  return targets;
}

std::vector<std::string> valuesToCalibrate(const std::vector<QuantTarget>& targets,
                                           const QuantizeOptions& options) {
  std::vector<std::string> names;
  if (options.format == QuantFormat::kWeightsOnly) return names;
  for (const QuantTarget& t : targets) {
    names.insert(names.end(), t.activation_inputs.begin(), t.activation_inputs.end());
    if (options.format == QuantFormat::kQOperator && !t.activation_inputs.empty())
      names.push_back(t.node->output(0)->name());
  }
  if (!targets.empty()) {
    const auto planned =
        plannedCalibrationNames(planOrtQdq(*targets.front().node->graph(), targets, options));
    names.insert(names.end(), planned.begin(), planned.end());
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

StatusOr<std::vector<QuantizedLayer>> quantizeModel(
    Model& model, const std::vector<QuantTarget>& targets,
    const std::map<std::string, Range>& activation_ranges, const QuantizeOptions& options) {
  if (options.weight_bits != 8 && options.weight_bits != 4)
    return invalidArgument("--weight-bits must be 8 or 4");
  if (options.act_bits != 8 && options.act_bits != 4 && options.act_bits != 2)
    return invalidArgument("--act-bits must be 8, 4 or 2");
  if (options.act_bits != 8 && options.format == QuantFormat::kQOperator)
    return unsupported("--act-bits " + std::to_string(options.act_bits) +
                       " needs --format qdq or integer (QLinearConv outputs are 8-bit)");
  if (options.format == QuantFormat::kInteger)
    return quantizeInteger(model, targets, activation_ranges, options);
  auto bitsOf = [&](const QuantTarget& t) {
    auto it = options.layer_weight_bits.find(t.name);
    return it == options.layer_weight_bits.end() ? options.weight_bits : it->second;
  };
  bool int4 = options.weight_bits == 4;
  for (const QuantTarget& t : targets) {
    const int bits = bitsOf(t);
    if (bits != 8 && bits != 4)
      return invalidArgument("layer '" + t.name + "': weight bits must be 8 or 4");
    int4 = int4 || bits == 4;
  }
  if (options.format == QuantFormat::kQOperator && int4)
    return unsupported(
        "--format qoperator needs --weight-bits 8 (QLinearConv takes 8-bit weights)");
  if (int4) {
    NNC_RETURN_IF_ERROR(requireOpset(model, 21, "int4 weights (blocked DequantizeLinear)"));
  } else if (options.per_channel) {
    NNC_RETURN_IF_ERROR(requireOpset(model, 13, "per-channel DequantizeLinear"));
  } else {
    NNC_RETURN_IF_ERROR(requireOpset(model, 10, "QuantizeLinear/DequantizeLinear"));
  }
  Graph& g = *model.graph;
  // ort placement: planned on the float graph, ranges of shared-scale tensors unified first.
  const OrtQdqPlan plan = planOrtQdq(g, targets, options);
  using RangeMap = std::map<std::string, Range>;
  NNC_ASSIGN_OR_RETURN(const RangeMap ranges, resolvePlannedRanges(plan, activation_ranges));
  const bool quantize_acts = options.format != QuantFormat::kWeightsOnly;
  std::map<std::string, ActQuant> made;  // activation -> its shared Q/DQ
  std::vector<QuantizedLayer> layers;
  for (const QuantTarget& t : targets) {
    Node& n = *t.node;
    const int bits = bitsOf(t);
    QuantizedLayer info{
        t.name, n.opType(), bits, 0, 0, 0, 0, n.output(0)->name(), n.output(0)->name()};
    if (options.format == QuantFormat::kQOperator && !t.activation_inputs.empty()) {
      NNC_ASSIGN_OR_RETURN(info, writeQOperatorLayer(g, t, ranges, options, made));
      layers.push_back(info);
      continue;
    }
    const std::string wbase = n.input(1)->name();
    Value* old_w = n.input(1);
    const WeightQuant wq =
        bits == 4 ? quantizeWeightInt4(g, n, options.block_size, options.balanced_rounding, wbase)
                  : quantizeWeightInt8(g, n, outputChannelAxis(n), options.per_channel, 8,
                                       options.balanced_rounding, wbase);
    n.setInput(1, wq.dequantized);
    if (!old_w->hasUses() && old_w->isInitializer() && !old_w->isGraphInput()) g.eraseValue(old_w);
    info.weight_scale_min = wq.scale_min;
    info.weight_scale_max = wq.scale_max;
    if (quantize_acts) {
      for (const std::string& a : t.activation_inputs) {
        NNC_ASSIGN_OR_RETURN(ActQuant aq, activationQdq(g, a, ranges, options, made));
        for (size_t i = 0; i < n.numInputs(); ++i)
          if (n.input(i) && n.input(i)->name() == a) n.setInput(i, aq.dequantized);
        info.act_scale = aq.params.scale;
        info.act_bits = options.act_bits;
      }
    }
    layers.push_back(info);
  }
  if (!plan.tensors.empty()) {
    NNC_ASSIGN_OR_RETURN(const OrtQdqStats s, applyOrtQdqPlan(model, plan, ranges, options));
    spdlog::info(
        "ort QDQ placement: {} Q/DQ pairs, {} int32 biases ({} weight scales raised), {} "
        "activations absorbed, {} other ops integer",
        s.tensors, s.int32_biases, s.bias_scale_raised, s.activations_absorbed,
        plan.integer_ops.size());
  }
  g.removeDeadNodes();
  NNC_RETURN_IF_ERROR(g.sortTopologically());
  return layers;
}

StatusOr<std::map<std::string, double>> measureSqnr(const Model& reference, const Model& quantized,
                                                    data::SampleReader& reader,
                                                    const std::vector<ValuePair>& values,
                                                    int64_t limit, int64_t batch, int threads) {
  exec::ExecutorOptions eo;
  eo.num_threads = threads;
  NNC_ASSIGN_OR_RETURN(auto ref, exec::Executor::create(reference, eo));
  NNC_ASSIGN_OR_RETURN(auto quant, exec::Executor::create(quantized, eo));
  std::map<std::string, std::string> wanted, reference_of;  // reference name -> quantized name
  for (const auto& [r, q] : values) wanted[r] = q, reference_of[q] = r;
  std::map<std::string, std::pair<double, double>> energy;  // signal, noise
  std::map<std::string, Tensor> ref_batch;
  const int64_t total = std::min(limit < 0 ? reader.size() : limit, reader.size());
  for (int64_t start = 0; start < total; start += batch) {
    const int64_t count = std::min(batch, total - start);
    NNC_ASSIGN_OR_RETURN(Tensor x, reader.readBatch(start, count));
    ref_batch.clear();
    std::vector<Tensor> feeds{x};
    NNC_ASSIGN_OR_RETURN(auto r_out,
                         ref->run(std::move(feeds), [&](const Value& v, const Tensor& t) {
                           if (wanted.count(v.name()) && t.dtype() == DType::kFloat32)
                             ref_batch[v.name()] = t;
                         }));
    (void)r_out;
    std::vector<Tensor> qfeeds{std::move(x)};
    NNC_ASSIGN_OR_RETURN(auto q_out, quant->run(std::move(qfeeds), [&](const Value& v,
                                                                       const Tensor& t) {
      auto ref_name = reference_of.find(v.name());
      if (ref_name == reference_of.end()) return;
      auto it = ref_batch.find(ref_name->second);
      if (it == ref_batch.end() || t.dtype() != DType::kFloat32 || t.numel() != it->second.numel())
        return;
      auto& [signal, noise] = energy[ref_name->second];
      const auto a = it->second.data<float>(), b = t.data<float>();
      for (size_t i = 0; i < a.size(); ++i) {
        signal += double(a[i]) * a[i];
        noise += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
      }
    }));
    (void)q_out;
  }
  std::map<std::string, double> sqnr;
  for (const auto& [name, e] : energy)
    sqnr[name] = e.second > 0 ? 10 * std::log10(e.first / e.second)
                              : std::numeric_limits<double>::infinity();
  return sqnr;
}

}  // namespace nnc::quant

namespace nnc::quant {
namespace {

// Per-channel (axis 1) sums of a float tensor, added to `sums`; returns elements per channel.
int64_t addChannelSums(const Tensor& t, std::vector<double>& sums) {
  if (t.rank() < 2) return 0;
  const int64_t c = t.dim(1), n = t.dim(0), inner = t.numel() / std::max<int64_t>(1, n * c);
  if (sums.empty()) sums.assign(c, 0.0);
  if (int64_t(sums.size()) != c) return 0;
  const auto d = t.data<float>();
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < c; ++ch) {
      double s = 0;
      const float* p = d.data() + (b * c + ch) * inner;
      for (int64_t i = 0; i < inner; ++i) s += p[i];
      sums[ch] += s;
    }
  return n * inner;
}

// Mean per channel of the named tensors over the first `limit` samples.
StatusOr<std::map<std::string, std::vector<double>>> channelMeans(
    const Model& model, data::SampleReader& reader, const std::set<std::string>& names,
    int64_t limit, int threads) {
  exec::ExecutorOptions eo;
  eo.num_threads = threads;
  NNC_ASSIGN_OR_RETURN(auto ex, exec::Executor::create(model, eo));
  std::map<std::string, std::vector<double>> sums;
  std::map<std::string, int64_t> counts;
  const int64_t total = std::min(limit, reader.size());
  for (int64_t start = 0; start < total; start += 32) {
    NNC_ASSIGN_OR_RETURN(Tensor x, reader.readBatch(start, std::min<int64_t>(32, total - start)));
    std::vector<Tensor> feeds{std::move(x)};
    NNC_ASSIGN_OR_RETURN(auto out, ex->run(std::move(feeds), [&](const Value& v, const Tensor& t) {
      if (names.count(v.name()) && t.dtype() == DType::kFloat32)
        counts[v.name()] += addChannelSums(t, sums[v.name()]);
    }));
    (void)out;
  }
  for (auto& [name, s] : sums)
    for (double& v : s) v /= double(std::max<int64_t>(1, counts[name]));
  return sums;
}

}  // namespace

StatusOr<int> correctBiases(const Model& reference, Model& quantized,
                            const std::vector<QuantizedLayer>& layers, data::SampleReader& reader,
                            int64_t limit, int threads) {
  std::set<std::string> ref_names;
  for (const auto& l : layers) ref_names.insert(l.output);
  NNC_ASSIGN_OR_RETURN(auto ref_means, channelMeans(reference, reader, ref_names, limit, threads));
  int corrected = 0;
  Graph& g = *quantized.graph;
  for (const QuantizedLayer& l : layers) {  // in graph order: each sees the earlier corrections
    Value* y = g.findValue(l.quantized_output);
    Node* n = y ? y->producer() : nullptr;
    if (n == nullptr || !(n->isOp("Conv") || n->isOp("Gemm"))) continue;  // QOperator: int bias
    auto ref = ref_means.find(l.output);
    if (ref == ref_means.end()) continue;
    NNC_ASSIGN_OR_RETURN(auto q_means,
                         channelMeans(quantized, reader, {l.quantized_output}, limit, threads));
    const std::vector<double>& qm = q_means[l.quantized_output];
    const std::vector<double>& rm = ref->second;
    if (qm.size() != rm.size() || rm.empty()) continue;
    const int64_t channels = int64_t(rm.size());
    std::vector<float> bias(channels, 0.f);
    const auto int32_bias = int32BiasValues(*n);  // ort placement: DequantizeLinear(int32)
    if (int32_bias) {
      if (int64_t(int32_bias->size()) != channels) continue;
      bias = *int32_bias;
    } else if (const Tensor* b = constantFloat32(n->input(2))) {
      if (b->numel() != channels && b->numel() != 1) continue;
      for (int64_t c = 0; c < channels; ++c) bias[c] = b->data<float>()[b->numel() == 1 ? 0 : c];
    }
    const double beta = n->isOp("Gemm") ? n->floatAttr("beta", 1.f) : 1.0;
    if (beta == 0) continue;
    for (int64_t c = 0; c < channels; ++c) bias[c] = float(bias[c] + (rm[c] - qm[c]) / beta);
    if (int32_bias) {
      NNC_RETURN_IF_ERROR(setInt32Bias(*n, bias));
      ++corrected;
      continue;
    }
    Value* old_b = n->input(2);
    Value* nb =
        g.addInitializer(l.name + "_B_corrected", Tensor::fromVector<float>({channels}, bias));
    if (n->numInputs() > 2)
      n->setInput(2, nb);
    else
      n->addInput(nb);
    if (old_b && !old_b->hasUses() && old_b->isInitializer() && !old_b->isGraphInput())
      g.eraseValue(old_b);
    ++corrected;
  }
  return corrected;
}

}  // namespace nnc::quant
