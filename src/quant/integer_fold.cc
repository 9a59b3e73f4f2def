#include "nncompress/quant/integer_fold.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <variant>

#include "nncompress/ir/option_error.h"

namespace nnc::quant {
namespace {

const Tensor* constOf(const Value* v, DType dtype) {
  if (v == nullptr) return nullptr;
  const Tensor* t = v->constantData();
  return t != nullptr && t->dtype() == dtype ? t : nullptr;
}

std::string displayName(const Node& n) { return n.name().empty() ? n.output(0)->name() : n.name(); }

// Everything the fake-quant chain of one layer depends on.
struct Chain {
  Node* conv = nullptr;
  Value* x_q = nullptr;     // uint8
  Value* x_zero = nullptr;  // uint8 scalar or null
  Value* w_q = nullptr;     // int8 [C, I/g, k...]
  Value* q_out = nullptr;   // the QuantizeLinear output the chain replaces
  double s_x = 1;
  int z_x = 0;
  std::vector<double> s_w;                        // per output channel
  std::vector<double> bias;                       // per output channel (0 when absent)
  std::vector<std::pair<double, double>> clamps;  // Relu / Clip bounds, in order
  // MaxPool / Flatten between the Conv and the quantizer: they commute with the chain's
  // per-channel non-decreasing map to integers, so they are replayed on the uint8 result.
  std::vector<const Node*> layout;
  double s_a = 1;
  int z_a = 0;
};

// Matches the QDQ pattern around `conv`; returns the reason when it does not match.
std::optional<std::string> matchChain(Node* conv, Chain& c) {
  c.conv = conv;
  const Node* dx = conv->input(0) ? conv->input(0)->producer() : nullptr;
  if (dx == nullptr || !dx->isOp("DequantizeLinear")) return "input is not dequantized";
  c.x_q = dx->input(0);
  if (c.x_q->dtype() != DType::kUInt8) return "input is not uint8";
  const Tensor* sx = constOf(dx->input(1), DType::kFloat32);
  if (sx == nullptr || sx->numel() != 1) return "input scale is not a constant scalar";
  c.s_x = sx->data<float>()[0];
  if (dx->input(2) != nullptr) {
    const Tensor* zx = constOf(dx->input(2), DType::kUInt8);
    if (zx == nullptr || zx->numel() != 1) return "input zero point is not a constant scalar";
    c.x_zero = dx->input(2);
    c.z_x = zx->data<uint8_t>()[0];
  }
  const Node* dw = conv->input(1) ? conv->input(1)->producer() : nullptr;
  if (dw == nullptr || !dw->isOp("DequantizeLinear")) return "weight is not dequantized";
  const Tensor* wq = constOf(dw->input(0), DType::kInt8);
  if (wq == nullptr || wq->rank() < 3) return "weight is not a constant int8 tensor";
  c.w_q = dw->input(0);
  const int64_t channels = wq->dim(0);
  const Tensor* sw = constOf(dw->input(1), DType::kFloat32);
  if (sw == nullptr || (sw->numel() != 1 && sw->numel() != channels))
    return "weight scale is not constant";
  if (sw->numel() != 1 && dw->intAttr("axis", 1) != 0) return "weight scale axis is not 0";
  if (dw->input(2) != nullptr) {
    const Tensor* zw = constOf(dw->input(2), DType::kInt8);
    if (zw == nullptr) return "weight zero point is not constant int8";
    for (int8_t z : zw->data<int8_t>())
      if (z != 0) return "weight zero point is not 0";
  }
  c.s_w.resize(channels);
  for (int64_t ch = 0; ch < channels; ++ch)
    c.s_w[ch] = sw->data<float>()[sw->numel() == 1 ? 0 : ch];
  c.bias.assign(channels, 0.0);
  if (conv->input(2) != nullptr) {
    const Tensor* b = constOf(conv->input(2), DType::kFloat32);
    if (b == nullptr || b->numel() != channels) return "bias is not constant";
    for (int64_t ch = 0; ch < channels; ++ch) c.bias[ch] = b->data<float>()[ch];
  }
  if (!(c.s_x > 0)) return "input scale is not positive";
  for (double s : c.s_w)
    if (!(s > 0)) return "a weight scale is not positive";
  // Conv -> [Relu | Clip]* -> QuantizeLinear, each intermediate read only by the next.
  Value* v = conv->output(0);
  for (int depth = 0;; ++depth) {
    if (v->isGraphOutput() || v->uses().size() != 1) return "output is read by float ops";
    Node* u = v->uses()[0].node;
    if (u->isOp("QuantizeLinear") && v->uses()[0].input_index == 0) {
      const Tensor* sa = constOf(u->input(1), DType::kFloat32);
      const Tensor* za = constOf(u->input(2), DType::kUInt8);
      if (sa == nullptr || sa->numel() != 1 || za == nullptr || za->numel() != 1)
        return "output quantizer is not uint8 with constant scalar parameters";
      c.s_a = sa->data<float>()[0];
      c.z_a = za->data<uint8_t>()[0];
      if (!(c.s_a > 0)) return "output scale is not positive";
      c.q_out = u->output(0);
      return std::nullopt;
    }
    if (depth >= 6) return "too many ops between the Conv and its quantizer";
    const double inf = std::numeric_limits<double>::infinity();
    if (u->isOp("Relu")) {
      c.clamps.emplace_back(0.0, inf);
    } else if (u->isOp("Clip") && v->uses()[0].input_index == 0) {
      double lo = -inf, hi = inf;
      for (int i : {1, 2}) {
        if (u->input(i) == nullptr) continue;
        const Tensor* t = constOf(u->input(i), DType::kFloat32);
        if (t == nullptr || t->numel() != 1) return "Clip bounds are not constant";
        (i == 1 ? lo : hi) = t->data<float>()[0];
      }
      c.clamps.emplace_back(lo, hi);
    } else if ((u->isOp("MaxPool") &&
                (u->numOutputs() == 1 || u->output(1) == nullptr || !u->output(1)->hasUses())) ||
               u->isOp("Flatten")) {
      c.layout.push_back(u);
    } else {
      return "output goes through " + u->opType() + " before its quantizer";
    }
    v = u->output(0);
  }
}

// The fake-quant chain's integer for accumulator `acc` of channel `ch`, in double precision.
int levelOf(const Chain& c, int64_t ch, int64_t acc) {
  double y = c.s_x * c.s_w[ch] * double(acc) + c.bias[ch];
  for (const auto& [lo, hi] : c.clamps) y = std::min(std::max(y, lo), hi);
  const double q = std::nearbyint(y / c.s_a) + c.z_a;  // round half to even
  return int(std::clamp(q, 0.0, 255.0));
}

// Smallest accumulator in [lo, hi] whose level reaches `level`, or hi + 1.
int64_t threshold(const Chain& c, int64_t ch, int level, int64_t lo, int64_t hi) {
  int64_t a = lo, b = hi + 1;
  while (a < b) {
    const int64_t mid = a + (b - a) / 2;
    if (levelOf(c, ch, mid) >= level)
      b = mid;
    else
      a = mid + 1;
  }
  return a;
}

struct FixedPoint {
  int64_t m = 0, offset = 0, shift = 0;
};

// m, offset, shift with min(hi, max(lo, floor((m A + offset) / 2^shift))) == level(A) for
// every A in [a_min, a_max], or nullopt.
std::optional<FixedPoint> fixedPointFor(const Chain& c, int64_t ch, int64_t a_min, int64_t a_max,
                                        int lo, int hi) {
  if (hi == lo) return FixedPoint{0, lo, 0};
  std::vector<int64_t> t(hi + 1);
  for (int j = lo + 1; j <= hi; ++j) t[j] = threshold(c, ch, j, a_min, a_max);
  const double scale = c.s_x * c.s_w[ch] / c.s_a;
  const int64_t a_abs = std::max(std::abs(a_min), std::abs(a_max)) + 1;
  const int s0 = std::max(1, 20 - int(std::floor(std::log2(scale))));
  for (int s = s0; s <= 62; ++s) {
    const __int128 unit = __int128(1) << s;
    const __int128 m = __int128(std::llround(std::ldexp(scale, s)));
    if (m <= 0) continue;
    // Keep m A + offset and lo 2^S, hi 2^S far inside int64.
    if (m * a_abs + 300 * unit > (__int128(1) << 61)) break;
    __int128 olo = std::numeric_limits<int64_t>::min(), ohi = std::numeric_limits<int64_t>::max();
    for (int j = lo + 1; j <= hi; ++j) {
      olo = std::max(olo, j * unit - m * t[j]);
      ohi = std::min(ohi, j * unit - m * t[j] + m - 1);
    }
    if (olo > ohi) continue;
    FixedPoint fp{int64_t(m), int64_t(olo + (ohi - olo) / 2), s};
    // Check the construction at both sides of every step and at the ends.
    auto g = [&](int64_t a) {
      __int128 v = __int128(fp.m) * a + fp.offset;
      v = std::max(v, __int128(lo) * unit);
      return int(std::min<__int128>(hi, v / unit));
    };
    bool ok = g(a_min) == levelOf(c, ch, a_min) && g(a_max) == levelOf(c, ch, a_max);
    for (int j = lo + 1; ok && j <= hi; ++j) {
      ok = g(t[j]) == levelOf(c, ch, t[j]) &&
           (t[j] == a_min || g(t[j] - 1) == levelOf(c, ch, t[j] - 1));
    }
    if (ok) return fp;
  }
  return std::nullopt;
}

void setType(Value* v, DType dtype, const Value* like, std::optional<Dim> extra = std::nullopt) {
  ValueType t = like->type();
  t.dtype = dtype;
  if (extra && t.shape) t.shape->push_back(*extra);
  if (extra && !t.shape) t.shape.reset();
  v->setType(t);
}

// Per-channel constant shaped [C, 1, ..., 1] (rank 1 + spatial) plus an optional trailing dim.
template <typename T>
Value* channelConst(Graph& g, const std::string& name, const std::vector<T>& values, int spatial,
                    int64_t trailing = 0) {
  const int64_t channels = trailing ? int64_t(values.size()) / trailing : int64_t(values.size());
  Shape shape{channels};
  for (int i = 0; i < spatial; ++i) shape.push_back(1);
  if (trailing) shape.push_back(trailing);
  return g.addInitializer(name, Tensor::fromVector<T>(shape, values));
}

Node* cast(Graph& g, Value* in, DType to, const std::string& name, const Value* like) {
  Node* n = g.addNode("Cast", {in}, {name});
  n->setAttribute(Attribute::makeInt("to", int64_t(to)));
  setType(n->output(0), to, like);
  return n;
}

Status requireOpsetForInteger(const Model& model) {
  const int64_t opset = model.opsetVersion("");
  if (opset < 13 || opset > 17)
    return unsupportedOption("format",
                             "the integer format needs a model of opset 13..17 (this one has " +
                                 std::to_string(opset) + ")");
  return Status::ok();
}

// Reachable int32 accumulators of one Conv per output channel (x_q in [0, 255]).
struct Accumulators {
  std::vector<int64_t> min, max;

  bool fitInt32() const {
    bool fits = true;
    for (size_t ch = 0; ch < min.size(); ++ch)
      fits = fits && min[ch] > std::numeric_limits<int32_t>::min() &&
             max[ch] < std::numeric_limits<int32_t>::max();
    return fits;
  }
};

Accumulators reachableAccumulators(const Chain& c, const Tensor& w) {
  const int64_t channels = w.dim(0), per_channel = w.numel() / channels;
  Accumulators a{std::vector<int64_t>(channels, 0), std::vector<int64_t>(channels, 0)};
  const auto wd = w.data<int8_t>();
  for (int64_t ch = 0; ch < channels; ++ch)
    for (int64_t i = 0; i < per_channel; ++i) {
      const int64_t wv = wd[ch * per_channel + i], lo = wv * (0 - c.z_x), hi = wv * (255 - c.z_x);
      a.min[ch] += std::min(lo, hi);
      a.max[ch] += std::max(lo, hi);
    }
  return a;
}

// One Conv being rewritten: its chain, the ConvInteger accumulator and the names of new values.
struct IntegerConv {
  Graph& g;
  const Chain& c;
  const Accumulators& range;
  std::string base;
  int64_t channels = 0;
  int spatial = 0;
  Value* acc = nullptr;
};

// k-bit activations: the level is the number of per-channel thresholds the accumulator reaches.
// Returns the uint8 output, or the reason the layer cannot be folded (before adding nodes).
std::variant<Value*, std::string> requantizeByThresholds(IntegerConv& ic, int act_bits,
                                                         IntegerLayer& info) {
  Graph& g = ic.g;
  const std::string& base = ic.base;
  Value* acc = ic.acc;
  const int levels = (1 << act_bits) - 1;
  std::vector<int32_t> t(ic.channels * levels);
  bool fits = true;
  for (int64_t ch = 0; ch < ic.channels && fits; ++ch) {
    fits = levelOf(ic.c, ch, ic.range.max[ch]) <= levels;
    for (int j = 1; j <= levels; ++j)
      t[ch * levels + j - 1] = int32_t(threshold(ic.c, ch, j, ic.range.min[ch], ic.range.max[ch]));
  }
  if (!fits) return "its quantizer has more than " + std::to_string(levels + 1) + " levels";
  Value* axes = g.addInitializer(base + "_axes", Tensor::fromVector<int64_t>({1}, {-1}));
  Node* un = g.addNode("Unsqueeze", {acc, axes}, {base + "_u"});
  setType(un->output(0), DType::kInt32, acc, Dim::known(1));
  Value* tv = channelConst<int32_t>(g, base + "_thresholds", t, ic.spatial, levels);
  Node* ge = g.addNode("GreaterOrEqual", {un->output(0), tv}, {base + "_ge"});
  setType(ge->output(0), DType::kBool, acc, Dim::known(levels));
  Node* gi = cast(g, ge->output(0), DType::kInt32, base + "_gei", ge->output(0));
  Node* sum = g.addNode("ReduceSum", {gi->output(0), axes}, {base + "_count"});
  sum->setAttribute(Attribute::makeInt("keepdims", 0));
  setType(sum->output(0), DType::kInt32, acc);
  info.form = "thresholds";
  info.levels = levels;
  return cast(g, sum->output(0), DType::kUInt8, base + "_q", acc)->output(0);
}

// Per-channel integer constants of the fixed-point requantizer.
struct FixedPointConstants {
  std::vector<int64_t> m, offset, unit, bias, lo, hi;
};

std::optional<FixedPointConstants> fixedPointConstants(const IntegerConv& ic, IntegerLayer& info) {
  const int64_t channels = ic.channels;
  FixedPointConstants k{std::vector<int64_t>(channels), std::vector<int64_t>(channels),
                        std::vector<int64_t>(channels), std::vector<int64_t>(channels),
                        std::vector<int64_t>(channels), std::vector<int64_t>(channels)};
  for (int64_t ch = 0; ch < channels; ++ch) {
    const int64_t a_min = ic.range.min[ch], a_max = ic.range.max[ch];
    const int lo = levelOf(ic.c, ch, a_min), hi = levelOf(ic.c, ch, a_max);
    auto fp = fixedPointFor(ic.c, ch, a_min, a_max, lo, hi);
    if (!fp.has_value()) return std::nullopt;
    k.m[ch] = fp->m;
    k.unit[ch] = int64_t(1) << fp->shift;
    const __int128 lowest = __int128(fp->m) * a_min + fp->offset;
    k.bias[ch] = lowest >= 0 ? 0 : int64_t((-lowest + k.unit[ch] - 1) / k.unit[ch]);
    k.offset[ch] = fp->offset + k.bias[ch] * k.unit[ch];
    k.lo[ch] = lo;
    k.hi[ch] = hi;
    info.max_shift = std::max<int>(info.max_shift, int(fp->shift));
  }
  return k;
}

// 8-bit activations: an exact fixed-point multiplier, floor-divided and clamped per channel.
// Returns the uint8 output, or the reason the layer cannot be folded (before adding nodes).
std::variant<Value*, std::string> requantizeByMultiplier(IntegerConv& ic, IntegerLayer& info) {
  const std::optional<FixedPointConstants> k = fixedPointConstants(ic, info);
  if (!k) return std::string("no exact fixed-point multiplier within int64");
  Graph& g = ic.g;
  const std::string& base = ic.base;
  Value* acc = ic.acc;
  const int spatial = ic.spatial;
  Node* a64 = cast(g, acc, DType::kInt64, base + "_acc64", acc);
  Node* mul = g.addNode("Mul", {a64->output(0), channelConst(g, base + "_m", k->m, spatial)},
                        {base + "_scaled"});
  setType(mul->output(0), DType::kInt64, acc);
  // offset + bias_c 2^S makes the dividend >= 0 over the reachable range, where integer Div
  // (truncating) is floor; bias_c is subtracted from the (small) quotient. Clamping the
  // dividend instead (Max on values >= 2^31) gives wrong results in ONNX Runtime 1.30.
  Node* add = g.addNode("Add", {mul->output(0), channelConst(g, base + "_o", k->offset, spatial)},
                        {base + "_offset"});
  setType(add->output(0), DType::kInt64, acc);
  Node* dv = g.addNode("Div", {add->output(0), channelConst(g, base + "_unit", k->unit, spatial)},
                       {base + "_div"});
  setType(dv->output(0), DType::kInt64, acc);
  Node* sub = g.addNode("Sub", {dv->output(0), channelConst(g, base + "_bias", k->bias, spatial)},
                        {base + "_floor"});
  setType(sub->output(0), DType::kInt64, acc);
  Node* mx = g.addNode("Max", {sub->output(0), channelConst(g, base + "_lo", k->lo, spatial)},
                       {base + "_low"});
  setType(mx->output(0), DType::kInt64, acc);
  Node* mn = g.addNode("Min", {mx->output(0), channelConst(g, base + "_hi", k->hi, spatial)},
                       {base + "_clamped"});
  setType(mn->output(0), DType::kInt64, acc);
  info.form = "multiplier";
  return cast(g, mn->output(0), DType::kUInt8, base + "_q", acc)->output(0);
}

// Rewrites one matched Conv chain as ConvInteger + integer requantizer; returns why not.
std::optional<std::string> foldIntegerConv(Graph& g, Node* conv, const Chain& c, int act_bits,
                                           IntegerLayer& info) {
  const Tensor& w = *c.w_q->constantData();
  const Accumulators range = reachableAccumulators(c, w);
  if (!range.fitInt32()) return "its accumulator may overflow int32";
  IntegerConv ic{g, c, range, info.name + "_int", w.dim(0), int(w.rank() - 2)};
  std::vector<Value*> conv_in = {c.x_q, c.w_q};
  if (c.x_zero) conv_in.push_back(c.x_zero);
  Node* ci = g.addNode("ConvInteger", conv_in, {ic.base + "_acc"});
  for (const Attribute& a : conv->attributes()) ci->setAttribute(a);
  setType(ci->output(0), DType::kInt32, conv->output(0));
  ic.acc = ci->output(0);
  auto requantized =
      act_bits <= 4 ? requantizeByThresholds(ic, act_bits, info) : requantizeByMultiplier(ic, info);
  if (auto* why = std::get_if<std::string>(&requantized)) {
    g.eraseNode(ci);
    return *why;
  }
  Value* out = std::get<Value*>(requantized);
  for (const Node* op : c.layout) {  // MaxPool / Flatten on the integers
    Node* again = g.addNode(op->opType(), {out}, {ic.base + "_" + op->opType()});
    for (const Attribute& a : op->attributes()) again->setAttribute(a);
    setType(again->output(0), DType::kUInt8, op->output(0));
    out = again->output(0);
  }
  g.replaceAllUsesWith(c.q_out, out);
  info.output = out->name();
  info.replaced = c.q_out->name();
  return std::nullopt;
}

}  // namespace

StatusOr<IntegerFoldResult> foldIntegerLayers(Model& model, int act_bits) {
  if (act_bits != 8 && act_bits != 4 && act_bits != 2)
    return invalidArgument("integer folding needs 8, 4 or 2 activation bits");
  if (model.opsetVersion("") < 13)
    return unsupported("integer folding needs opset >= 13 (Unsqueeze/ReduceSum axes inputs)");
  Graph& g = *model.graph;
  IntegerFoldResult result;
  NNC_ASSIGN_OR_RETURN(std::vector<Node*> order, g.topologicalOrder());
  for (Node* conv : order) {
    if (!conv->isOp("Conv")) continue;
    const std::string name = displayName(*conv);
    Chain c;
    if (auto why = matchChain(conv, c)) {
      result.skipped.emplace_back(name, *why);
      continue;
    }
    IntegerLayer info{name, "", c.x_q->name(), "", "", 0, 0};
    if (auto why = foldIntegerConv(g, conv, c, act_bits, info)) {
      result.skipped.emplace_back(name, *why);
      continue;
    }
    result.folded.push_back(info);
    spdlog::info("integer: {} -> ConvInteger + {} ({})", name, info.form,
                 info.form == "thresholds" ? std::to_string(info.levels) + " thresholds/channel"
                                           : "shift <= " + std::to_string(info.max_shift));
  }
  g.removeDeadNodes();
  NNC_RETURN_IF_ERROR(g.sortTopologically());
  return result;
}

StatusOr<std::vector<QuantizedLayer>> quantizeInteger(
    Model& model, const std::vector<QuantTarget>& targets,
    const std::map<std::string, Range>& activation_ranges, const QuantizeOptions& options) {
  if (options.symmetric_activations)
    return unsupportedOption(
        "symmetric_activations",
        "the integer format needs asymmetric uint8 activations (ConvInteger reads uint8 "
        "inputs), not symmetric ones");
  if (options.weight_bits != 8 || !options.layer_weight_bits.empty())
    return unsupportedOption(
        "weight_bits", "the integer format needs 8-bit weights (ConvInteger takes 8-bit weights)");
  NNC_RETURN_IF_ERROR(requireOpsetForInteger(model));
  QuantizeOptions qdq = options;
  qdq.format = QuantFormat::kQdq;
  qdq.placement = QdqPlacement::kTensorRt;  // foldIntegerLayers reads the inputs-only layout
  NNC_ASSIGN_OR_RETURN(std::vector<QuantizedLayer> layers,
                       quantizeModel(model, targets, activation_ranges, qdq));
  NNC_ASSIGN_OR_RETURN(IntegerFoldResult folded, foldIntegerLayers(model, options.act_bits));
  for (const auto& [layer, why] : folded.skipped)
    spdlog::info("integer: {} stays QDQ ({})", layer, why);
  for (QuantizedLayer& l : layers)
    for (const IntegerLayer& f : folded.folded)
      if (f.name == l.name) {
        l.op = "ConvInteger";
        l.quantized_output = f.output;
      }
  spdlog::info("integer: folded {} of {} Conv layers", folded.folded.size(),
               folded.folded.size() + folded.skipped.size());
  return layers;
}

}  // namespace nnc::quant
