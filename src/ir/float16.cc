#include "nncompress/ir/float16.h"

#include <cmath>
#include <cstring>
#include <set>

namespace nnc {
namespace {

constexpr int64_t kOnnxFloat = 1;     // TensorProto.FLOAT
constexpr int64_t kOnnxFloat16 = 10;  // TensorProto.FLOAT16
constexpr float kHalfMax = 65504.f;

// Attributes that name an element type: Cast's target, the dtype of generators.
const std::set<std::string>& dtypeAttributes() {
  static const std::set<std::string> names = {"to", "dtype"};
  return names;
}

// Ops whose presence means the model was quantized: their scales are float32 by design.
bool isQuantizationOp(const Node& n) {
  static const std::set<std::string> ops = {"QuantizeLinear",
                                            "DequantizeLinear",
                                            "DynamicQuantizeLinear",
                                            "QLinearConv",
                                            "QLinearMatMul",
                                            "ConvInteger",
                                            "MatMulInteger",
                                            "QLinearAdd",
                                            "QLinearMul",
                                            "QLinearGlobalAveragePool"};
  return ops.count(n.opType()) > 0;
}

// IEEE half from float, round to nearest even (subnormals included). Values must fit.
uint16_t floatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u)
    return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds past 65504
  if (abs < 0x38800000u) {                                               // half subnormal or 0
    const float scaled = std::fabs(f) * 16777216.f;                      // units of 2^-24
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(scaled)));
  }
  const uint32_t mant = abs & 0x7fffffu;
  uint32_t h = ((abs >> 23) - 112) << 10 | (mant >> 13);
  const uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // may carry into the exponent
  return static_cast<uint16_t>(sign | h);
}

}  // namespace

Tensor convertFloatTensor(const Tensor& t, DType to) {
  Tensor out(to, t.shape());
  char* bytes = out.mutableBytes().data();
  for (int64_t i = 0; i < t.numel(); ++i) {
    const float v = static_cast<float>(t.elementAsDouble(i));
    if (to == DType::kFloat32) {
      std::memcpy(bytes + 4 * i, &v, 4);
    } else {
      const uint16_t h = floatToHalf(v);
      std::memcpy(bytes + 2 * i, &h, 2);
    }
  }
  return out;
}

namespace {

bool fitsHalf(const Tensor& t) {
  for (int64_t i = 0; i < t.numel(); ++i) {
    const double v = t.elementAsDouble(i);
    if (std::isfinite(v) && std::fabs(v) > kHalfMax) return false;
  }
  return true;
}

// Every float `from` in the main graph (values, weights, Constant and attribute tensors, Cast
// targets and generator dtypes) becomes `to`. Returns how many values changed.
int retypeFloats(Graph& g, DType from, DType to) {
  int changed = 0;
  for (const auto& v : g.values()) {
    if (v->isInitializer() && v->initializer()->dtype() == from)
      v->setInitializer(convertFloatTensor(*v->initializer(), to));
    if (v->dtype() != from) continue;
    ValueType type = v->type();
    type.dtype = to;
    v->setType(std::move(type));
    ++changed;
  }
  const int64_t from_code = from == DType::kFloat16 ? kOnnxFloat16 : kOnnxFloat;
  const int64_t to_code = to == DType::kFloat16 ? kOnnxFloat16 : kOnnxFloat;
  for (const auto& n : g.nodes())
    for (Attribute& a : n->mutableAttributes()) {
      if (a.kind == AttrKind::kInt && dtypeAttributes().count(a.name) && a.i == from_code)
        a.i = to_code;
      for (Tensor& t : a.tensors)
        if (t.dtype() == from) t = convertFloatTensor(t, to);
    }
  return changed;
}

// Subgraph attributes stay serialized: their float16 values would no longer agree with a
// promoted main graph.
bool hasSubgraphs(const Graph& g) {
  for (const auto& n : g.nodes())
    for (const Attribute& a : n->attributes())
      if (a.kind == AttrKind::kGraph || a.kind == AttrKind::kGraphs) return true;
  return false;
}

bool hasFloat32Values(const Graph& g) {
  for (const auto& v : g.values())
    if (v->dtype() == DType::kFloat32 ||
        (v->isInitializer() && v->initializer()->dtype() == DType::kFloat32))
      return true;
  for (const auto& n : g.nodes())
    if (n->isOp("Cast") && n->intAttr("to", 0) == kOnnxFloat) return true;
  return false;
}

// The whole model back to float16, when nothing was quantized and every weight fits.
bool demotable(const Graph& g) {
  for (const auto& n : g.nodes()) {
    if (isQuantizationOp(*n)) return false;
    for (const Attribute& a : n->attributes())
      for (const Tensor& t : a.tensors)
        if (t.dtype() == DType::kFloat32 && !fitsHalf(t)) return false;
  }
  for (const Value* v : g.initializers())
    if (v->initializer()->dtype() == DType::kFloat32 && !fitsHalf(*v->initializer())) return false;
  return true;
}

Node* castNode(Graph& g, const Node* before, Value* input, const std::string& output, DType to) {
  const std::vector<std::string> names = {output};
  Node* cast = before ? g.insertNodeBefore(before, "Cast", {input}, names)
                      : g.addNode("Cast", {input}, names);
  cast->setAttribute(Attribute::makeInt("to", to == DType::kFloat16 ? kOnnxFloat16 : kOnnxFloat));
  ValueType type = input->type();
  type.dtype = to;
  cast->output()->setType(std::move(type));
  return cast;
}

// A float16 graph input again, read through a Cast to float32 by its former readers.
void castInput(Graph& g, Value* input) {
  const std::vector<Use> uses = input->uses();
  const Node* first = g.nodes().empty() ? nullptr : g.nodes().front().get();
  Node* cast = castNode(g, first, input, input->name() + "_float32", DType::kFloat32);
  for (const Use& u : uses)
    if (u.input_index >= 0) u.node->setInput(static_cast<size_t>(u.input_index), cast->output());
  ValueType type = input->type();
  type.dtype = DType::kFloat16;
  input->setType(std::move(type));
}

}  // namespace

bool computesInFloat16(const Model& model) {
  for (const auto& v : model.graph->values()) {
    const bool half = v->dtype() == DType::kFloat16 ||
                      (v->isInitializer() && v->initializer()->dtype() == DType::kFloat16);
    if (!half) continue;
    if (v->isGraphInput() || v->isGraphOutput()) return true;
    // Values stored as float16 and only cast to float32 (quantize's compact storage) compute
    // nothing in float16.
    for (const Use& u : v->uses())
      if (!u.node->isOp("Cast")) return true;
  }
  return false;
}

Float16Promotion promoteFloat16(Model& model) {
  Float16Promotion p;
  if (!computesInFloat16(model) || hasSubgraphs(*model.graph)) return p;
  Graph& g = *model.graph;
  p.pure = !hasFloat32Values(g);
  for (const Value* v : g.inputs())
    if (v->dtype() == DType::kFloat16) p.inputs.push_back(v->name());
  for (const Value* v : g.outputs())
    if (v->dtype() == DType::kFloat16) p.outputs.push_back(v->name());
  p.values = retypeFloats(g, DType::kFloat16, DType::kFloat32);
  p.promoted = true;
  return p;
}

Status writeBackFloat16(Model& model, const Float16Promotion& promotion, bool* demoted) {
  if (demoted) *demoted = false;
  if (!promotion.promoted) return Status::ok();
  Graph& g = *model.graph;
  if (promotion.pure && demotable(g)) {
    retypeFloats(g, DType::kFloat32, DType::kFloat16);
    if (demoted) *demoted = true;
    return Status::ok();
  }
  for (const std::string& name : promotion.inputs)
    if (Value* v = g.findValue(name); v && v->isGraphInput() && v->dtype() == DType::kFloat32)
      castInput(g, v);
  for (size_t i = 0; i < g.outputs().size(); ++i) {
    Value* v = g.outputs()[i];
    const std::string name = v->name();
    bool was_half = false;
    for (const std::string& o : promotion.outputs) was_half = was_half || o == name;
    if (!was_half || v->dtype() != DType::kFloat32) continue;
    // Free the output's name for the Cast that will carry it.
    Value* temp = g.createUniqueValue(name + "_float32");
    const std::string float_name = temp->name();
    g.eraseValue(temp);
    NNC_RETURN_IF_ERROR(g.renameValue(v, float_name));
    Node* cast = castNode(g, nullptr, v, name, DType::kFloat16);
    if (cast->output()->name() != name)
      return internalError("float16 output '" + name + "' could not keep its name");
    g.setOutput(i, cast->output());
  }
  return Status::ok();
}

}  // namespace nnc
