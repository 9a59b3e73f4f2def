#include "quantize_internal.h"

namespace nnc::quant {
namespace {

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

}  // namespace

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

}  // namespace nnc::quant
