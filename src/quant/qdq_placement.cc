#include "nncompress/quant/qdq_placement.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <set>

#include "nncompress/ir/batch_norm.h"
#include "nncompress/ir/option_error.h"
#include "nncompress/quant/int32_bias.h"
#include "nncompress/quant/quantize.h"

namespace nnc::quant {
namespace {

// How an op ONNX Runtime runs on uint8 relates its output's quantization to its inputs'.
enum class IntegerKind {
  kOwnScale,          // a QLinear* kernel requantizes: the output has its own range
  kSharesInputScale,  // DQ -> op -> Q dropped: the op moves uint8 values, so Q must equal DQ
};

struct IntegerOpRule {
  const char* op;
  IntegerKind kind;
  bool all_inputs;  // every input is data (else only input 0; the rest are constant parameters)
};

// The non-layer ops of ORT's QDQ selector registry (qdq_selector_action_transformer.cc) on CPU.
constexpr IntegerOpRule kIntegerOps[] = {
    {"Add", IntegerKind::kOwnScale, true},
    {"Mul", IntegerKind::kOwnScale, true},
    {"Concat", IntegerKind::kOwnScale, true},
    {"AveragePool", IntegerKind::kOwnScale, false},
    {"GlobalAveragePool", IntegerKind::kOwnScale, false},
    {"Sigmoid", IntegerKind::kOwnScale, false},
    {"LeakyRelu", IntegerKind::kOwnScale, false},
    {"MaxPool", IntegerKind::kSharesInputScale, false},
    {"Resize", IntegerKind::kSharesInputScale, false},
    {"Reshape", IntegerKind::kSharesInputScale, false},
    {"Flatten", IntegerKind::kSharesInputScale, false},
    {"Transpose", IntegerKind::kSharesInputScale, false},
    {"Squeeze", IntegerKind::kSharesInputScale, false},
    {"Unsqueeze", IntegerKind::kSharesInputScale, false},
    {"Slice", IntegerKind::kSharesInputScale, false},
    {"Gather", IntegerKind::kSharesInputScale, false},
};

const IntegerOpRule* integerRule(const Node& n) {
  for (const IntegerOpRule& r : kIntegerOps)
    if (n.isOp(r.op)) return &r;
  return nullptr;
}

bool isFloatActivation(const Value* v) {
  return v != nullptr && v->dtype() == DType::kFloat32 && v->constantData() == nullptr;
}

std::vector<Value*> dataInputs(const Node& n, const IntegerOpRule& rule) {
  if (!rule.all_inputs) return {n.input(0)};
  return n.inputs();
}

std::optional<float> constScalar(const Value* v) {
  const Tensor* t = constantFloat32(v);
  if (t == nullptr || t->numel() != 1) return std::nullopt;
  return t->data<float>()[0];
}

// The upper bound of a Relu (infinity) or Clip(0, M) (M), or nullopt for anything else.
std::optional<float> clampUpperBound(const Node& n) {
  if (n.isOp("Relu")) return std::numeric_limits<float>::infinity();
  if (!n.isOp("Clip") || n.numInputs() < 2) return std::nullopt;
  const auto lo = constScalar(n.input(1));
  const auto hi =
      n.numInputs() > 2 && n.input(2) ? constScalar(n.input(2)) : std::optional<float>(INFINITY);
  if (!lo || !hi || *lo != 0.f || !(*hi > 0.f)) return std::nullopt;
  return hi;
}

// The Relu / Clip(0, M) that is the only reader of `n`'s output, which the output Q absorbs.
Node* absorbableActivation(const Node& n) {
  const Value* y = n.output(0);
  if (y == nullptr || y->uses().size() != 1 || y->isGraphOutput()) return nullptr;
  Node* act = y->uses()[0].node;
  if (act->numOutputs() != 1 || !isFloatActivation(act->output(0)) ||
      act->output(0)->isGraphOutput() || !clampUpperBound(*act))
    return nullptr;
  return act;
}

// A table op whose output can be quantized at all (one used float output, no graph output).
bool hasQuantizableOutput(const Node& n) {
  for (size_t i = 1; i < n.numOutputs(); ++i)
    if (n.output(i) && (n.output(i)->hasUses() || n.output(i)->isGraphOutput())) return false;
  const Value* y = n.output(0);
  return isFloatActivation(y) && !y->isGraphOutput();
}

// A per-channel multiplier whose nonzero magnitudes span more than this costs the smallest channel
// over 4 of the 8 bits of a per-tensor grid placed before it. Measured: the densenet fixture's
// unfolded BNs span 1.9-8.1x and lose nothing with the grid (10k test, +0.01..0.05 points); the
// pre-activation fixture's span 285-981x and fall from 89.05% to 28.5% with it.
constexpr double kMaxScaleSpreadBeforeMul = 16.0;

bool wideSpread(const Tensor& c) {
  double lo = std::numeric_limits<double>::infinity(), hi = 0;
  for (float x : c.data<float>())
    if (x != 0) lo = std::min(lo, double(std::fabs(x))), hi = std::max(hi, double(std::fabs(x)));
  return hi > kMaxScaleSpreadBeforeMul * lo;
}

// True when `v` reaches, through Concat and data movement only, a Mul by a per-channel constant of
// wide spread (a BatchNorm left unfolded because its channels differ widely in scale): one
// per-tensor grid on `v` would round its small channels away before that Mul rescales them.
bool feedsPerChannelScale(const Value* v, int depth = 0) {
  if (v == nullptr || depth > 8) return false;
  for (const Use& u : v->uses()) {
    const Node& r = *u.node;
    if (r.isOp("Mul") && r.numInputs() == 2 && u.input_index >= 0 && u.input_index < 2) {
      const Tensor* c = constantFloat32(r.input(1 - u.input_index));
      if (c != nullptr && c->numel() > 1 && wideSpread(*c)) return true;
    }
    const IntegerOpRule* rule = integerRule(r);
    const bool passes = r.isOp("Concat") || (rule && rule->kind == IntegerKind::kSharesInputScale);
    if (passes && feedsPerChannelScale(r.output(0), depth + 1)) return true;
  }
  return false;
}

struct Planner {
  std::map<const Node*, const QuantTarget*> layers;  // integer layers (8-bit weights)
  std::set<std::string> layer_inputs;                // activation inputs of all targets
  std::set<const Node*> live;                        // table ops still integer

  Value* effectiveOutput(const Node& n) const {
    if (Node* act = absorbableActivation(n)) return act->output(0);
    return n.output(0);
  }
  std::set<const Value*> quantizedTensors(const Graph& g) const {
    std::set<const Value*> q;
    for (const std::string& a : layer_inputs) q.insert(g.findValue(a));
    for (const auto& [n, t] : layers) {
      const Value* y = effectiveOutput(*n);
      if (!y->isGraphOutput() && !feedsPerChannelScale(y)) q.insert(y);
    }
    for (const Node* n : live) q.insert(effectiveOutput(*n));
    return q;
  }
  bool readByIntegerOp(const Value* v) const {
    for (const Use& u : v->uses()) {
      if (live.count(u.node)) return true;
      auto it = layers.find(u.node);
      if (it != layers.end() && std::count(it->second->activation_inputs.begin(),
                                           it->second->activation_inputs.end(), v->name()))
        return true;
    }
    return false;
  }
  // Drops table ops with an unquantized input or without an integer reader until none changes.
  void prune(const Graph& g) {
    for (bool changed = true; changed;) {
      changed = false;
      const std::set<const Value*> q = quantizedTensors(g);
      for (auto it = live.begin(); it != live.end();) {
        const Node& n = **it;
        bool inputs_quantized = true;
        for (const Value* in : dataInputs(n, *integerRule(n)))
          inputs_quantized = inputs_quantized && q.count(in);
        if (inputs_quantized && readByIntegerOp(effectiveOutput(n))) {
          ++it;
        } else {
          it = live.erase(it);
          changed = true;
        }
      }
    }
  }
};

int weightBitsOf(const QuantTarget& t, const QuantizeOptions& options) {
  auto it = options.layer_weight_bits.find(t.name);
  return it == options.layer_weight_bits.end() ? options.weight_bits : it->second;
}

}  // namespace

StatusOr<QdqPlacement> parseQdqPlacement(const std::string& name) {
  if (name == "ort") return QdqPlacement::kOrt;
  if (name == "tensorrt") return QdqPlacement::kTensorRt;
  return invalidOption("placement",
                       "unknown QDQ placement '" + name + "' (expected ort or tensorrt)");
}

const char* qdqPlacementName(QdqPlacement placement) {
  return placement == QdqPlacement::kOrt ? "ort" : "tensorrt";
}

OrtQdqPlan planOrtQdq(const Graph& graph, const std::vector<QuantTarget>& targets,
                      const QuantizeOptions& options) {
  OrtQdqPlan plan;
  if (options.format != QuantFormat::kQdq || options.placement != QdqPlacement::kOrt ||
      options.act_bits != 8 || options.symmetric_activations)
    return plan;
  auto order = graph.topologicalOrder();
  if (!order.isOk()) return plan;
  Planner p;
  for (const QuantTarget& t : targets) {
    p.layer_inputs.insert(t.activation_inputs.begin(), t.activation_inputs.end());
    if (!t.activation_inputs.empty() && weightBitsOf(t, options) == 8) p.layers[t.node] = &t;
  }
  for (Node* n : *order) {
    const IntegerOpRule* rule = integerRule(*n);
    if (rule == nullptr || p.layers.count(n) || !hasQuantizableOutput(*n)) continue;
    bool data_ok = true;
    for (const Value* in : dataInputs(*n, *rule)) data_ok = data_ok && isFloatActivation(in);
    if (data_ok) p.live.insert(n);
  }
  p.prune(graph);
  // Tensors in graph order. A shared-scale op's output takes its input's parameters; when the
  // input has no other reader, the group takes the output's range instead (what reaches a reader:
  // max(clip(x)) = clip(max(x)), so clipping the input at the pooled range loses nothing).
  const std::set<const Value*> quantized = p.quantizedTensors(graph);
  std::map<std::string, std::string> params_of;
  std::set<std::string> movable;  // group sources whose group is a chain of single-reader links
  auto add = [&](const Value* v, const std::string& from) {
    if (v == nullptr || !quantized.count(v) || params_of.count(v->name())) return;
    params_of[v->name()] = from;
    plan.tensors.push_back({v->name(), from});
    if (from == v->name()) movable.insert(from);
  };
  auto share = [&](const Value* x, const Value* y) {
    const std::string src = params_of.count(x->name()) ? params_of[x->name()] : x->name();
    if (!movable.count(src) || x->uses().size() != 1) {
      movable.erase(src);
      add(y, src);
      return;
    }
    for (PlannedTensor& t : plan.tensors)
      if (t.params_of == src) t.params_of = params_of[t.name] = y->name();
    movable.erase(src);
    add(y, y->name());
  };
  for (const Value* in : graph.inputs()) add(in, in->name());
  for (Node* n : *order) {
    for (const Value* in : n->inputs()) add(in, in ? in->name() : "");
    if (p.layers.count(n)) plan.layers.push_back(n);
    if (!p.live.count(n)) continue;
    plan.integer_ops.push_back(n);
    const Value* y = p.effectiveOutput(*n);
    if (integerRule(*n)->kind == IntegerKind::kSharesInputScale)
      share(n->input(0), y);
    else
      add(y, y->name());
  }
  for (Node* n : *order) {
    const Value* y = p.layers.count(n) ? p.effectiveOutput(*n) : nullptr;
    if (y) add(y, y->name());  // layer outputs read only by the graph's tail
  }
  return plan;
}

std::vector<std::string> plannedCalibrationNames(const OrtQdqPlan& plan) {
  // Every planned tensor, shared ones too: a few more histograms, and ranges cached for one plan
  // (compress: all layers 8-bit) then serve any plan with fewer integer layers, where a tensor
  // that shared its range here may need its own.
  std::vector<std::string> names;
  for (const PlannedTensor& t : plan.tensors) names.push_back(t.name);
  return names;
}

StatusOr<std::map<std::string, Range>> resolvePlannedRanges(
    const OrtQdqPlan& plan, const std::map<std::string, Range>& ranges) {
  std::map<std::string, Range> out = ranges;
  for (const PlannedTensor& t : plan.tensors) {
    auto r = ranges.find(t.params_of);
    if (r == ranges.end())
      return internalError("no calibration range for '" + t.params_of + "' (ort QDQ placement)");
    out[t.name] = r->second;
  }
  return out;
}

namespace {

struct QdqPair {
  Node* q = nullptr;
  Node* dq = nullptr;
};

void setType(Value* v, DType dtype, const Value* like) {
  ValueType t = like ? like->type() : ValueType{};
  t.dtype = dtype;
  v->setType(t);
}

// The QuantizeLinear -> DequantizeLinear pair on `v` that quantizeModel made for a layer input.
std::optional<QdqPair> existingPair(const Value& v) {
  for (const Use& u : v.uses()) {
    if (!u.node->isOp("QuantizeLinear") || u.input_index != 0) continue;
    for (const Use& d : u.node->output(0)->uses())
      if (d.node->isOp("DequantizeLinear")) return QdqPair{u.node, d.node};
  }
  return std::nullopt;
}

QdqPair makePair(Graph& g, Value* v, const QParams& p, const std::string& base) {
  Value* scale = g.addInitializer(base + "_s", Tensor::fromVector<float>({}, {p.scale}));
  Tensor zt(DType::kUInt8, {});
  zt.mutableData<uint8_t>()[0] = uint8_t(p.zero_point);
  Value* zero = g.addInitializer(base + "_z", std::move(zt));
  Node* q = g.addNode("QuantizeLinear", {v, scale, zero}, {base + "_q"});
  setType(q->output(0), DType::kUInt8, v);
  Node* dq = g.addNode("DequantizeLinear", {q->output(0), scale, zero}, {base + "_dq"});
  setType(dq->output(0), DType::kFloat32, v);
  return {q, dq};
}

// Every reader of `v` but its QuantizeLinear reads the DequantizeLinear instead, so the Q is the
// producer's only reader (ORT's selectors require that). Subgraph references stay as they are.
void routeReadersThrough(Value* v, const QdqPair& pair) {
  const std::vector<Use> uses = v->uses();
  for (const Use& u : uses)
    if (u.node != pair.q && u.input_index != Use::kImplicitUse)
      u.node->setInput(u.input_index, pair.dq->output(0));
}

const Tensor* dequantizeScale(const Value* v) {
  const Node* dq = v ? v->producer() : nullptr;
  if (dq == nullptr || !dq->isOp("DequantizeLinear")) return nullptr;
  const Tensor* s = constantFloat32(dq->input(1));
  return s;
}

// Requantizes the channels of an int8 weight whose scale went from old_scales to new_scales.
void requantizeWeight(Tensor& w, int axis, const std::vector<float>& old_scales,
                      const std::vector<float>& new_scales) {
  int64_t inner = 1;
  for (int d = axis + 1; d < w.rank(); ++d) inner *= w.dim(d);
  auto q = w.mutableData<int8_t>();
  for (int64_t i = 0; i < w.numel(); ++i) {
    const size_t c = old_scales.size() == 1 ? 0 : size_t((i / inner) % w.dim(axis));
    if (old_scales[c] == new_scales[c]) continue;
    const float v = std::nearbyint(float(q[i]) * old_scales[c] / new_scales[c]);
    q[i] = int8_t(std::clamp(v, -127.f, 127.f));
  }
}

// Conv / Gemm with DQ(x), DQ(W int8) and a constant float bias: the bias becomes
// DequantizeLinear(int32, s_x s_w). Returns the number of weight scales raised, or -1 if the
// layer does not match.
int writeInt32Bias(Graph& g, Node& n) {
  const Tensor* bias = constantFloat32(n.input(2));
  const Tensor* sx = dequantizeScale(n.input(0));
  Node* wdq = n.input(1) ? n.input(1)->producer() : nullptr;
  const Tensor* sw = dequantizeScale(n.input(1));
  if (!bias || !sx || sx->numel() != 1 || !sw || !wdq->input(0)->isInitializer() ||
      wdq->input(0)->initializer()->dtype() != DType::kInt8)
    return -1;
  if (n.isOp("Gemm") && n.floatAttr("beta", 1.f) != 1.f) return -1;
  Tensor& w = *wdq->input(0)->mutableInitializer();
  const int axis = int(wdq->intAttr("axis", 1));
  if (axis < 0 || axis >= w.rank()) return -1;
  const int64_t channels = sw->numel() == 1 ? bias->numel() : sw->numel();
  if (bias->numel() != channels || (sw->numel() != 1 && w.dim(axis) != channels)) return -1;
  const float s_x = sx->data<float>()[0];
  const std::vector<float> old_scales(sw->data<float>().begin(), sw->data<float>().end());
  std::vector<float> scales = old_scales;
  const int raised = raiseWeightScalesForInt32Bias(bias->data<float>(), s_x, scales);
  if (raised > 0) {
    requantizeWeight(w, axis, old_scales, scales);
    auto stored = wdq->input(1)->mutableInitializer()->mutableData<float>();
    std::copy(scales.begin(), scales.end(), stored.begin());
    spdlog::info("{}: raised {} weight scale(s) so the int32 bias b / (s_x s_w) stays below 2^30",
                 n.name().empty() ? n.output(0)->name() : n.name(), raised);
  }
  std::vector<float> bias_scales(scales.size());
  for (size_t c = 0; c < scales.size(); ++c) bias_scales[c] = s_x * scales[c];
  const std::string base = n.input(2)->name();
  Value* bq = g.addInitializer(base + "_i32", quantizeBiasInt32(bias->data<float>(), s_x, scales));
  Value* bs = g.addInitializer(
      base + "_i32s", scales.size() == 1
                          ? Tensor::fromVector<float>({}, bias_scales)
                          : Tensor::fromVector<float>({int64_t(scales.size())}, bias_scales));
  Node* dq = g.addNode("DequantizeLinear", {bq, bs}, {base + "_dq"});
  if (scales.size() > 1) dq->setAttribute(Attribute::makeInt("axis", 0));
  setType(dq->output(0), DType::kFloat32, n.input(2));
  Value* old_bias = n.input(2);
  n.setInput(2, dq->output(0));
  if (!old_bias->hasUses() && old_bias->isInitializer() && !old_bias->isGraphInput())
    g.eraseValue(old_bias);
  return raised;
}

}  // namespace

StatusOr<OrtQdqStats> applyOrtQdqPlan(Model& model, const OrtQdqPlan& plan,
                                      const std::map<std::string, Range>& ranges,
                                      const QuantizeOptions& options) {
  Graph& g = *model.graph;
  OrtQdqStats stats;
  int made = 0;
  for (const PlannedTensor& t : plan.tensors) {
    Value* v = g.findValue(t.name);
    if (v == nullptr) return internalError("ort QDQ placement: no value '" + t.name + "'");
    std::optional<QdqPair> pair = existingPair(*v);
    if (!pair) {
      auto r = ranges.find(t.params_of);
      if (r == ranges.end())
        return internalError("no calibration range for '" + t.params_of + "' (ort placement)");
      pair = makePair(g, v, chooseQParams(r->second, false, options.act_bits),
                      "oq" + std::to_string(made++));
    }
    routeReadersThrough(v, *pair);
    ++stats.tensors;
  }
  for (Node* n : plan.integer_ops)
    stats.activations_absorbed += absorbableActivation(*n) != nullptr;
  for (Node* n : plan.layers) {
    stats.activations_absorbed += absorbableActivation(*n) != nullptr;
    if (n->isOp("MatMul") || n->numInputs() < 3 || n->input(2) == nullptr) continue;
    const int raised = writeInt32Bias(g, *n);
    if (raised < 0) continue;
    ++stats.int32_biases;
    stats.bias_scale_raised += raised;
  }
  g.removeDeadNodes();
  NNC_RETURN_IF_ERROR(g.sortTopologically());
  return stats;
}

namespace {

// The int32 initializer and scales behind a layer's bias DequantizeLinear.
std::pair<Tensor*, const Tensor*> int32BiasParts(const Node& layer) {
  Value* b = layer.input(2);
  const Node* dq = b ? b->producer() : nullptr;
  if (dq == nullptr || !dq->isOp("DequantizeLinear") || dq->numInputs() > 2) return {};
  Value* q = dq->input(0);
  const Tensor* s = constantFloat32(dq->input(1));
  if (!q->isInitializer() || q->initializer()->dtype() != DType::kInt32 || s == nullptr ||
      (s->numel() != 1 && s->numel() != q->initializer()->numel()))
    return {};
  return {q->mutableInitializer(), s};
}

}  // namespace

std::optional<std::vector<float>> int32BiasValues(const Node& layer) {
  const auto [q, s] = int32BiasParts(layer);
  if (q == nullptr) return std::nullopt;
  std::vector<float> out(q->numel());
  for (int64_t c = 0; c < q->numel(); ++c)
    out[c] = float(q->data<int32_t>()[c]) * s->data<float>()[s->numel() == 1 ? 0 : c];
  return out;
}

Status setInt32Bias(Node& layer, const std::vector<float>& bias) {
  const auto [q, s] = int32BiasParts(layer);
  if (q == nullptr || int64_t(bias.size()) != q->numel())
    return internalError("layer has no int32 bias of " + std::to_string(bias.size()) + " values");
  for (int64_t c = 0; c < q->numel(); ++c) {
    const double step = s->data<float>()[s->numel() == 1 ? 0 : c];
    const double v = step > 0 ? std::nearbyint(bias[c] / step) : 0.0;
    q->mutableData<int32_t>()[c] = int32_t(std::clamp(v, -kInt32BiasLimit, kInt32BiasLimit));
  }
  return Status::ok();
}

}  // namespace nnc::quant
