#include "nncompress/quant/compact.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#include "nncompress/ir/float16.h"

namespace nnc::quant {
namespace {

bool hasSubgraph(const Node& n) {
  if (!n.implicitInputs().empty()) return true;
  for (const Attribute& a : n.attributes())
    if (a.kind == AttrKind::kGraph || a.kind == AttrKind::kGraphs) return true;
  return false;
}

// Every Constant that Graph::constantToInitializer accepts becomes an initializer.
int constantsToInitializers(Graph& g) {
  std::vector<Node*> nodes;
  for (const auto& n : g.nodes()) nodes.push_back(n.get());
  int converted = 0;
  for (Node* n : nodes) converted += g.constantToInitializer(n) != nullptr;
  return converted;
}

// Initializers with equal contents become one (the first in initializer order).
int shareInitializers(Graph& g) {
  std::map<std::tuple<DType, Shape, std::string>, Value*> seen;
  int shared = 0;
  for (Value* v : g.initializers()) {
    if (v->isGraphInput() || v->isGraphOutput()) continue;  // overridable / named by the user
    const Tensor& t = *v->initializer();
    auto [it, inserted] = seen.emplace(std::make_tuple(t.dtype(), t.shape(), t.bytes()), v);
    if (inserted) continue;
    g.replaceAllUsesWith(v, it->second);
    g.eraseValue(v);
    ++shared;
  }
  return shared;
}

bool allEqual(const std::vector<int64_t>& v, int64_t x) {
  for (int64_t e : v)
    if (e != x) return false;
  return true;
}

int dropDefaultAttributes(Graph& g) {
  int dropped = 0;
  for (const auto& n : g.nodes()) {
    if (n->isOp("Gemm") || n->isOp("Flatten")) {
      std::vector<std::string> defaults;
      for (const Attribute& a : n->attributes()) {
        const bool is_default =
            (a.kind == AttrKind::kFloat && (a.name == "alpha" || a.name == "beta") && a.f == 1.f) ||
            (a.kind == AttrKind::kInt && (a.name == "transA" || a.name == "transB") && a.i == 0) ||
            (a.kind == AttrKind::kInt && a.name == "axis" && a.i == 1);
        if (is_default) defaults.push_back(a.name);
      }
      for (const std::string& name : defaults) dropped += n->removeAttribute(name) ? 1 : 0;
      continue;
    }
    const bool conv = n->isOp("Conv"), qconv = n->isOp("QLinearConv");
    if (!conv && !qconv) continue;
    auto drop = [&](std::string_view name) { dropped += n->removeAttribute(name) ? 1 : 0; };
    const Attribute* a;
    if ((a = n->findAttribute("strides")) && a->kind == AttrKind::kInts && allEqual(a->ints, 1))
      drop("strides");
    if ((a = n->findAttribute("dilations")) && a->kind == AttrKind::kInts && allEqual(a->ints, 1))
      drop("dilations");
    if (n->stringAttr("auto_pad", "NOTSET") == "NOTSET" && (a = n->findAttribute("pads")) &&
        a->kind == AttrKind::kInts && allEqual(a->ints, 0))
      drop("pads");
    if ((a = n->findAttribute("group")) && a->kind == AttrKind::kInt && a->i == 1) drop("group");
    // kernel_shape is optional ("If not present, should be inferred from input W").
    const Value* w = n->input(qconv ? 3 : 1);
    const std::optional<Shape> ws = w ? w->staticShape() : std::nullopt;
    const Tensor* wt = w ? w->constantData() : nullptr;
    const Shape* shape = wt ? &wt->shape() : (ws ? &*ws : nullptr);
    if ((a = n->findAttribute("kernel_shape")) && a->kind == AttrKind::kInts && shape &&
        shape->size() == a->ints.size() + 2 &&
        std::equal(a->ints.begin(), a->ints.end(), shape->begin() + 2))
      drop("kernel_shape");
  }
  return dropped;
}

// Whether float16 bits are a normal number or zero: subnormals lose the relative precision
// the storage relies on, and infinities and NaN carry none.
bool isNormalHalfOrZero(uint16_t h) {
  const uint16_t exponent = (h >> 10) & 0x1f;
  return (h & 0x7fff) == 0 || (exponent > 0 && exponent < 31);
}

// A float32 initializer of at least kMinHalfElements values read only as a bias (Conv/Gemm input
// 2), as an operand of Add/Mul/Sub (BatchNorm rewritten as Mul/Add) or as the scale of a
// DequantizeLinear of a constant weight becomes float16 + Cast(to float). Those values set a
// per-channel offset or a per-channel step; float16's relative error (2^-11) is far below the
// int8/int4 quantization step they sit next to. Constant weights themselves are never touched.
constexpr int64_t kMinHalfElements = 8;

bool halfStorageUse(const Use& u) {
  const Node& n = *u.node;
  if (u.input_index == 2 && (n.isOp("Conv") || n.isOp("ConvTranspose") || n.isOp("Gemm")))
    return true;
  if (n.isOp("Add") || n.isOp("Mul") || n.isOp("Sub")) return true;
  if (u.input_index == 1 && n.isOp("DequantizeLinear")) {
    const Value* q = n.input(0);
    return q != nullptr && q->isInitializer();
  }
  // The per-channel weight scale of QLinearConv / QLinearMatMul (input 4, next to the weight).
  if (u.input_index == 4 && (n.isOp("QLinearConv") || n.isOp("QLinearMatMul"))) {
    const Value* w = n.input(3);
    return w != nullptr && w->isInitializer();
  }
  return false;
}

// The constant scale initializer of the DequantizeLinear producing `v`, or nullptr.
Value* dequantizeScaleInit(const Value* v) {
  const Node* dq = v ? v->producer() : nullptr;
  if (dq == nullptr || !dq->isOp("DequantizeLinear") || dq->input(1) == nullptr) return nullptr;
  return dq->input(1)->isInitializer() ? dq->input(1) : nullptr;
}

// The int32 bias of an ort-placed layer, DequantizeLinear(b_q, s_x s_w):
//   s_x s_w stored as Mul(s_x, s_w) of the two scales the layer's other DequantizeLinears already
//   hold (it is exactly their float product: nothing changes; ORT folds the Mul);
//   b_q stored as int16 + Cast(to int32) when every value fits (lossless; ORT folds the Cast).
// The products are mostly below float16's normal range, so they stayed float32: 8 bytes per
// channel become 2 (mobilenetv2 int8 QDQ: 65.7 KB -> 61 KB).
int compactInt32Biases(Graph& g) {
  int rewritten = 0;
  std::vector<Node*> nodes;
  for (const auto& n : g.nodes()) nodes.push_back(n.get());
  for (Node* dq : nodes) {
    if (!dq->isOp("DequantizeLinear") || dq->numInputs() != 2) continue;
    Value* q = dq->input(0);
    Value* s = dq->input(1);
    const Value* y = dq->output(0);
    if (!q->isInitializer() || q->initializer()->dtype() != DType::kInt32 ||
        q->uses().size() != 1 || !s->isInitializer() || s->uses().size() != 1 ||
        y->uses().size() != 1 || y->isGraphOutput())
      continue;
    const Use& use = y->uses()[0];
    const Node& layer = *use.node;
    if (use.input_index != 2 || !(layer.isOp("Conv") || layer.isOp("Gemm"))) continue;
    Value* sx = dequantizeScaleInit(layer.input(0));
    Value* sw = dequantizeScaleInit(layer.input(1));
    const Tensor& sb = *s->initializer();
    bool product = sx && sw && sx->initializer()->numel() == 1 &&
                   sx->initializer()->dtype() == DType::kFloat32 &&
                   sw->initializer()->dtype() == DType::kFloat32 && sb.dtype() == DType::kFloat32 &&
                   sw->initializer()->shape() == sb.shape();
    for (int64_t c = 0; product && c < sb.numel(); ++c)
      product = sb.data<float>()[c] ==
                sx->initializer()->data<float>()[0] * sw->initializer()->data<float>()[c];
    if (product) {
      Node* mul = g.addNode("Mul", {sx, sw}, {s->name() + "_m"});
      mul->output(0)->setType(s->type());
      dq->setInput(1, mul->output(0));
      g.eraseValue(s);
    }
    const auto b = q->initializer()->data<int32_t>();
    const bool fits = std::all_of(b.begin(), b.end(), [](int32_t v) {
      return v >= std::numeric_limits<int16_t>::min() && v <= std::numeric_limits<int16_t>::max();
    });
    if (fits) {
      Tensor narrow(DType::kInt16, q->initializer()->shape());
      std::copy(b.begin(), b.end(), narrow.mutableData<int16_t>().begin());
      Value* stored = g.addInitializer(q->name() + "_16", std::move(narrow));
      Node* cast = g.addNode("Cast", {stored}, {q->name() + "_c"});
      cast->setAttribute(Attribute::makeInt("to", 6));  // INT32
      cast->output(0)->setType(q->type());
      dq->setInput(0, cast->output(0));
      g.eraseValue(q);
    }
    rewritten += product || fits;
  }
  return rewritten;
}

// A layer whose data input stays float (the classifier, auto-exclude's float inputs,
// weights-only models) gains nothing from a DequantizeLinear on its int8 weight: ONNX Runtime
// fuses no such pair and dequantizes the weight on every run (bench/quant_latency.sh's
// weights-only column shows the result). Cast + Mul by the per-channel scale computes the same
// values (zero points are 0), and ONNX Runtime folds them into a float weight once, at session
// start; the file keeps the int8 weight.
bool isFloatInputLayer(const Node& n) {
  if (!(n.isOp("Conv") || n.isOp("ConvTranspose") || n.isOp("Gemm") || n.isOp("MatMul")))
    return false;
  const Node* x = n.input(0) ? n.input(0)->producer() : nullptr;
  return n.input(0) && !(x && x->isOp("DequantizeLinear"));
}

// The scale of `dq` shaped to broadcast against its quantized input along `axis`; nullopt when
// the DequantizeLinear is not a per-tensor or per-axis one of a constant int8 weight with zero
// points 0 (blocked, int4 and asymmetric ones stay).
std::optional<Tensor> broadcastScale(const Node& dq) {
  const Value* q = dq.input(0);
  const Value* s = dq.input(1);
  const Value* z = dq.numInputs() > 2 ? dq.input(2) : nullptr;
  if (!q || !q->isInitializer() || q->initializer()->dtype() != DType::kInt8) return std::nullopt;
  if (!s || !s->isInitializer() || s->initializer()->dtype() != DType::kFloat32)
    return std::nullopt;
  if (dq.intAttr("block_size", 0) != 0) return std::nullopt;
  if (z) {
    if (!z->isInitializer() || z->initializer()->dtype() != DType::kInt8) return std::nullopt;
    for (int8_t v : z->initializer()->data<int8_t>())
      if (v != 0) return std::nullopt;
  }
  const Tensor& qt = *q->initializer();
  const Tensor& st = *s->initializer();
  if (st.numel() == 1) return st;
  int64_t axis = dq.intAttr("axis", 1);
  if (axis < 0) axis += qt.rank();
  if (st.rank() != 1 || axis < 0 || axis >= qt.rank() || st.dim(0) != qt.dim(axis))
    return std::nullopt;
  Shape shape(qt.rank(), 1);
  shape[axis] = st.dim(0);
  Tensor b(DType::kFloat32, shape);
  b.mutableBytes() = st.bytes();
  return b;
}

int weightDequantizeAsCastMul(Graph& g) {
  int rewritten = 0;
  std::vector<Node*> nodes;
  for (const auto& n : g.nodes()) nodes.push_back(n.get());
  for (Node* n : nodes) {
    if (!isFloatInputLayer(*n) || n->numInputs() < 2 || !n->input(1)) continue;
    Value* w = n->input(1);
    Node* dq = w->producer();
    if (!dq || !dq->isOp("DequantizeLinear") || w->uses().size() != 1) continue;
    auto scale = broadcastScale(*dq);
    if (!scale) continue;
    Value* q = dq->input(0);
    Node* cast = g.insertNodeBefore(dq, "Cast", {q}, {w->name() + "_i"});
    cast->setAttribute(Attribute::makeInt("to", 1));  // FLOAT
    ValueType type = q->type();
    type.dtype = DType::kFloat32;
    cast->output(0)->setType(type);
    Value* s = g.addInitializer(dq->input(1)->name() + "_b", std::move(*scale));
    Node* mul = g.insertNodeBefore(dq, "Mul", {cast->output(0), s}, {w->name() + "_m"});
    mul->output(0)->setType(w->type());
    n->setInput(1, mul->output(0));
    ++rewritten;
  }
  if (rewritten > 0) g.removeDeadNodes();
  return rewritten;
}

int halfPrecisionStorage(Graph& g) {
  int converted = 0;
  for (Value* v : g.initializers()) {
    const Tensor& t = *v->initializer();
    if (t.dtype() != DType::kFloat32 || t.numel() < kMinHalfElements) continue;
    if (v->isGraphInput() || v->isGraphOutput() || !v->hasUses()) continue;
    bool ok = true;
    for (const Use& u : v->uses()) ok = ok && halfStorageUse(u);
    if (!ok) continue;
    Tensor half = convertFloatTensor(t, DType::kFloat16);
    const auto bits = half.data<uint16_t>();
    if (!std::all_of(bits.begin(), bits.end(), isNormalHalfOrZero)) continue;
    Value* stored = g.addInitializer(v->name() + "_h", std::move(half));
    Node* cast = g.addNode("Cast", {stored}, {v->name() + "_f"});
    cast->setAttribute(Attribute::makeInt("to", 1));  // FLOAT
    ValueType type = v->type();
    type.dtype = DType::kFloat32;
    type.shape = std::vector<Dim>();
    for (int64_t d : t.shape()) type.shape->push_back(Dim::known(d));
    cast->output(0)->setType(type);
    g.replaceAllUsesWith(v, cast->output(0));
    g.eraseValue(v);
    ++converted;
  }
  return converted;
}

std::string base36(uint64_t i) {
  static const char* kDigits = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::string s;
  do {
    s.insert(s.begin(), kDigits[i % 36]);
    i /= 36;
  } while (i > 0);
  return s;
}

// The IR has no rename, so the graph is rebuilt with the new names (same nodes, same order).
StatusOr<int> shortenNames(Model& model) {
  const Graph& g = *model.graph;
  for (const auto& n : g.nodes())
    if (hasSubgraph(*n)) return 0;
  if (!g.sparseInitializers().empty() || !g.quantizationAnnotations().empty()) return 0;
  std::set<std::string> taken;  // every current name: a new name never shadows an old one
  for (const auto& v : g.values()) taken.insert(v->name());
  uint64_t next = 0;
  int renamed = 0;
  auto newName = [&](const Value* v) {
    if (v->isGraphInput() || v->isGraphOutput()) return v->name();
    std::string name;
    do name = base36(next++);
    while (taken.count(name));
    ++renamed;
    return name;
  };
  auto copyFacts = [](const Value* from, Value* to) {
    to->setType(from->type());
    to->setListedInValueInfo(from->listedInValueInfo());
    to->setDocString(from->docString());
  };
  auto out = std::make_unique<Graph>();
  out->setName(g.name());
  out->setDocString(g.docString());
  std::map<const Value*, Value*> map;
  for (Value* v : g.inputs()) {
    NNC_ASSIGN_OR_RETURN(Value * nv, out->createValue(v->name()));
    copyFacts(v, nv);
    if (v->isInitializer()) nv->setInitializer(*v->initializer());
    out->addInput(nv);
    map[v] = nv;
  }
  for (Value* v : g.initializers()) {
    if (map.count(v)) continue;
    Value* nv = out->addInitializer(newName(v), *v->initializer());
    copyFacts(v, nv);
    map[v] = nv;
  }
  NNC_ASSIGN_OR_RETURN(std::vector<Node*> order, g.topologicalOrder());
  for (Node* n : order) {
    std::vector<Value*> inputs;
    for (Value* v : n->inputs()) {
      if (v != nullptr && !map.count(v))
        return internalError("compact: value '" + v->name() + "' has no producer");
      inputs.push_back(v ? map[v] : nullptr);
    }
    std::vector<std::string> names;
    for (Value* v : n->outputs()) names.push_back(v ? newName(v) : "");
    Node* nn = out->addNode(n->opType(), inputs, names, n->domain());
    nn->setName(n->name());
    nn->setDocString(n->docString());
    for (const Attribute& a : n->attributes()) nn->setAttribute(a);
    for (size_t i = 0; i < n->numOutputs(); ++i)
      if (Value* v = n->output(i)) {
        copyFacts(v, nn->output(i));
        map[v] = nn->output(i);
      }
  }
  for (Value* v : g.outputs()) {
    if (!map.count(v)) return internalError("compact: graph output '" + v->name() + "' is lost");
    out->addOutput(map[v]);
  }
  model.graph = std::move(out);
  return renamed;
}

}  // namespace

StatusOr<CompactStats> compactModel(Model& model, const CompactOptions& options) {
  Graph& g = *model.graph;
  CompactStats stats;
  stats.constants_to_initializers = constantsToInitializers(g);
  stats.weights_cast_mul = weightDequantizeAsCastMul(g);
  stats.initializers_shared = shareInitializers(g);
  stats.attributes_dropped = dropDefaultAttributes(g);
  stats.int32_biases_compacted = compactInt32Biases(g);
  if (stats.int32_biases_compacted > 0) NNC_RETURN_IF_ERROR(g.sortTopologically());
  if (options.float16_storage) {
    stats.stored_as_float16 = halfPrecisionStorage(g);
    NNC_RETURN_IF_ERROR(g.sortTopologically());
  }
  if (!options.keep_names) {
    for (const auto& n : g.nodes()) {
      n->setName("");
      n->setDocString("");
    }
    for (const auto& v : g.values()) v->setDocString("");
    g.setDocString("");
    NNC_ASSIGN_OR_RETURN(stats.values_renamed, shortenNames(model));
  }
  return stats;
}

}  // namespace nnc::quant
