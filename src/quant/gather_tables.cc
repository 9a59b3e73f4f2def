#include <algorithm>
#include <cmath>
#include <map>

#include "nncompress/quant/balanced_rounding.h"
#include "quantize_internal.h"

namespace nnc::quant {
namespace {

// Smaller tables save less than their extra nodes cost to read.
constexpr int64_t kMinTableElements = 1024;
constexpr int64_t kMinRowLength = 8;  // a per-row scale costs 4 bytes a row

bool readsRowsOf(const Use& u) {
  const Node& n = *u.node;
  if (!n.isOp("Gather") || u.input_index != 0 || n.numOutputs() != 1) return false;
  const int64_t axis = n.intAttr("axis", 0);
  return (axis == 0 || axis == -2) && !n.output(0)->isGraphOutput();
}

bool excluded(const Node& n, const QuantizeOptions& options) {
  const auto& e = options.exclude;
  return std::find(e.begin(), e.end(), displayName(n)) != e.end() ||
         std::find(e.begin(), e.end(), n.output(0)->name()) != e.end();
}

// A float32 initializer of `rank` dims, large enough to be worth its scales, of finite values (an
// inf row has no int8 grid), read only where `reads_rows` says (by layers nobody excluded).
template <typename ReadsRows>
bool isRowQuantizable(const Value& v, int rank, const QuantizeOptions& options,
                      ReadsRows reads_rows) {
  const Tensor* t = v.initializer();
  if (t == nullptr || t->dtype() != DType::kFloat32 || t->rank() != rank || v.isGraphInput() ||
      v.isGraphOutput() || !v.hasUses() || t->numel() < kMinTableElements ||
      t->dim(rank - 1) < kMinRowLength)
    return false;
  for (const Use& u : v.uses())
    if (!reads_rows(u) || excluded(*u.node, options)) return false;
  const auto values = t->data<float>();
  return std::all_of(values.begin(), values.end(), [](float x) { return std::isfinite(x); });
}

struct RowQuantized {
  Tensor q;      // int8, the table's shape
  Tensor scale;  // float, the table's shape with the last dim 1
  float scale_min = 0, scale_max = 0;
};

// Nearest rounding: a row is read as a vector on its own, so each element keeps its own error
// within half a step (balanced rounding, made for the sums a layer's weights feed, may move one
// element a whole step).
// A row is the last axis: [rows, length] for a table, [directions, gates x hidden, inputs] for a
// recurrent weight.
RowQuantized quantizeRows(const Tensor& t) {
  const int64_t length = t.dim(t.rank() - 1), rows = t.numel() / length;
  Shape scale_shape = t.shape();
  scale_shape.back() = 1;
  const auto td = t.data<float>();
  constexpr int kQmax = 127;
  std::vector<float> scale(rows);
  for (int64_t r = 0; r < rows; ++r) {
    float amax = 0;
    for (int64_t i = r * length; i < (r + 1) * length; ++i) amax = std::max(amax, std::abs(td[i]));
    scale[r] = amax > 0 ? amax / kQmax : 1.f;
  }
  RowQuantized out{Tensor(DType::kInt8, t.shape()), Tensor::fromVector<float>(scale_shape, scale)};
  const std::vector<int> ints = roundWeights(
      td, scale, [&](int64_t i) { return i / length; }, kQmax, false);
  std::copy(ints.begin(), ints.end(), out.q.mutableData<int8_t>().begin());
  const auto [mn, mx] = std::minmax_element(scale.begin(), scale.end());
  out.scale_min = *mn;
  out.scale_max = *mx;
  return out;
}

// y = Gather(table, ids)  ->  Mul(Cast(Gather(q, ids)), Gather(scale, ids)): the rows looked up
// are dequantized, so the table stays int8 at run time too.
QuantizedLayer rewriteGather(Graph& g, Node& gather, Value* q, Value* s, const RowQuantized& r) {
  Value* y = gather.output(0);
  Value* ids = gather.input(1);
  const std::string base = y->name();
  Node* rows = g.insertNodeBefore(&gather, "Gather", {q, ids}, {base + "_q"});
  setType(rows->output(0), DType::kInt8, y);
  Node* cast = g.insertNodeBefore(&gather, "Cast", {rows->output(0)}, {base + "_i"});
  cast->setAttribute(Attribute::makeInt("to", 1));  // FLOAT
  setType(cast->output(0), DType::kFloat32, y);
  Node* scales = g.insertNodeBefore(&gather, "Gather", {s, ids}, {base + "_s"});
  ValueType scale_type = y->type();
  if (scale_type.shape && !scale_type.shape->empty()) scale_type.shape->back() = Dim::known(1);
  scales->output(0)->setType(scale_type);
  Node* mul =
      g.insertNodeBefore(&gather, "Mul", {cast->output(0), scales->output(0)}, {base + "_dq"});
  mul->output(0)->setType(y->type());
  g.replaceAllUsesWith(y, mul->output(0));
  return {displayName(gather),   "Gather", 8, 0, r.scale_min, r.scale_max, 0, y->name(),
          mul->output(0)->name()};
}

// Recurrent layers and the inputs holding their weights: W (1) and R (2), [directions, gates x
// hidden, inputs or hidden] at every version.
bool isRecurrentOp(const Node& n) { return n.isOp("LSTM") || n.isOp("GRU") || n.isOp("RNN"); }

// W or R of recurrent layers: [directions, gates x hidden, inputs or hidden].
bool readsRecurrentWeight(const Use& u) {
  return isRecurrentOp(*u.node) && (u.input_index == 1 || u.input_index == 2);
}

// W -> Mul(Cast(q), scale): int8 in the file; runtimes fold the constant product once at load
// (ONNX Runtime's constant folding), so the recurrence itself runs in float as before. Every
// version of these ops and every runtime reads it, unlike DequantizeLinear per axis (opset 13+,
// one axis: a bidirectional weight has rows along two).
Value* dequantizedWeight(Graph& g, Value* w, const RowQuantized& r, const Node& first_reader) {
  Value* q = g.addInitializer(w->name() + "_q", r.q);
  Value* s = g.addInitializer(w->name() + "_s", r.scale);
  Node* cast = g.insertNodeBefore(&first_reader, "Cast", {q}, {w->name() + "_i"});
  cast->setAttribute(Attribute::makeInt("to", 1));  // FLOAT
  setType(cast->output(0), DType::kFloat32, w);
  Node* mul = g.insertNodeBefore(&first_reader, "Mul", {cast->output(0), s}, {w->name() + "_dq"});
  mul->output(0)->setType(w->type());
  return mul->output(0);
}

const Value* firstOutput(const Node& n) {
  for (const Value* v : n.outputs())
    if (v != nullptr) return v;
  return nullptr;
}

}  // namespace

std::vector<QuantizedLayer> quantizeRecurrentWeights(Graph& g, const QuantizeOptions& options) {
  std::map<const Node*, QuantizedLayer> by_layer;
  std::vector<const Node*> order;
  for (Value* w : g.initializers()) {
    if (!isRowQuantizable(*w, 3, options, readsRecurrentWeight)) continue;
    const RowQuantized r = quantizeRows(*w->initializer());
    const std::vector<Use> uses = w->uses();
    Value* dq = dequantizedWeight(g, w, r, *uses.front().node);
    for (const Use& u : uses) {
      u.node->setInput(static_cast<size_t>(u.input_index), dq);
      auto [it, added] = by_layer.try_emplace(u.node);
      QuantizedLayer& l = it->second;
      if (added) {
        order.push_back(u.node);
        const Value* out = firstOutput(*u.node);
        l = {displayName(*u.node),   u.node->opType(),      8, 0, r.scale_min, r.scale_max, 0,
             out ? out->name() : "", out ? out->name() : ""};
      }
      l.weight_scale_min = std::min(l.weight_scale_min, r.scale_min);
      l.weight_scale_max = std::max(l.weight_scale_max, r.scale_max);
    }
  }
  std::vector<QuantizedLayer> layers;
  for (const Node* n : order) layers.push_back(by_layer.at(n));
  return layers;
}

std::vector<QuantizedLayer> quantizeGatherTables(Graph& g, const QuantizeOptions& options) {
  std::vector<QuantizedLayer> layers;
  for (Value* table : g.initializers()) {
    if (!isRowQuantizable(*table, 2, options, readsRowsOf)) continue;
    RowQuantized r = quantizeRows(*table->initializer());
    Value* q = g.addInitializer(table->name() + "_q", std::move(r.q));
    Value* s = g.addInitializer(table->name() + "_s", std::move(r.scale));
    std::vector<Node*> readers;
    for (const Use& u : table->uses()) readers.push_back(u.node);
    for (Node* gather : readers) layers.push_back(rewriteGather(g, *gather, q, s, r));
  }
  return layers;
}

}  // namespace nnc::quant
