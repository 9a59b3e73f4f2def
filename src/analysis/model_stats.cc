#include "nncompress/analysis/model_stats.h"

#include <algorithm>
#include <functional>
#include <unordered_map>
#include <unordered_set>

#include "nncompress/ir/weight_layout.h"

namespace nnc {
namespace {

int64_t product(const Shape& s, size_t from = 0) {
  int64_t p = 1;
  for (size_t i = from; i < s.size(); ++i) p *= s[i];
  return p;
}

const ShapeSource& modelShapes() {
  static const ShapeSource shapes;
  return shapes;
}

// out_elements * (weight elements / C_out): every output element reads one filter slice.
std::optional<int64_t> convMacs(const Node& n, const ShapeSource& s, size_t weight_index) {
  auto w = s.input(n, weight_index);
  auto y = s.output(n, 0);
  if (!w || !y || w->empty() || (*w)[0] == 0) return std::nullopt;
  return product(*y) * (product(*w) / (*w)[0]);
}

// in_elements * (weight elements / C_in): every input element scatters one filter slice.
std::optional<int64_t> convTransposeMacs(const Node& n, const ShapeSource& s) {
  auto w = s.input(n, 1);
  auto x = s.input(n, 0);
  if (!w || !x || w->empty() || (*w)[0] == 0) return std::nullopt;
  return product(*x) * (product(*w) / (*w)[0]);
}

std::optional<int64_t> gemmMacs(const Node& n, const ShapeSource& s) {
  auto a = s.input(n, 0);
  auto y = s.output(n, 0);
  if (!a || !y || a->size() != 2) return std::nullopt;
  const int64_t k = (*a)[weightLayout(n)->data_channel_axis];  // A [M, K], transA: [K, M]
  return product(*y) * k;
}

std::optional<int64_t> matmulMacs(const Node& n, const ShapeSource& s, size_t a_index) {
  auto a = s.input(n, a_index);
  auto y = s.output(n, 0);
  if (!a || !y || a->empty()) return std::nullopt;
  return product(*y) * a->back();
}

// RNN, GRU, LSTM: each step multiplies the input by W and the hidden state by R, in every
// direction: seq_length * (elements of W + elements of R). X is [seq, batch, input], or
// [batch, seq, input] with layout 1 (opset 14).
std::optional<int64_t> recurrentMacs(const Node& n, const ShapeSource& s) {
  auto x = s.input(n, 0);
  auto w = s.input(n, 1);
  auto r = s.input(n, 2);
  if (!x || !w || !r || x->size() != 3) return std::nullopt;
  return (*x)[n.intAttr("layout", 0) == 1 ? 1 : 0] * (product(*w) + product(*r));
}

using MacRule = std::function<std::optional<int64_t>(const Node&, const ShapeSource&)>;

const std::unordered_map<std::string, MacRule>& macRules() {
  static const std::unordered_map<std::string, MacRule> rules = {
      {"Conv", [](const Node& n, const ShapeSource& s) { return convMacs(n, s, 1); }},
      {"ConvInteger", [](const Node& n, const ShapeSource& s) { return convMacs(n, s, 1); }},
      {"QLinearConv", [](const Node& n, const ShapeSource& s) { return convMacs(n, s, 3); }},
      {"ConvTranspose", convTransposeMacs},
      {"Gemm", gemmMacs},
      {"MatMul", [](const Node& n, const ShapeSource& s) { return matmulMacs(n, s, 0); }},
      {"MatMulInteger", [](const Node& n, const ShapeSource& s) { return matmulMacs(n, s, 0); }},
      {"QLinearMatMul", [](const Node& n, const ShapeSource& s) { return matmulMacs(n, s, 0); }},
      {"RNN", recurrentMacs},
      {"GRU", recurrentMacs},
      {"LSTM", recurrentMacs},
  };
  return rules;
}

// The input that holds a node's main weight, for the weight-shape column.
int mainWeightInput(const Node& n) {
  if (n.isOp("QLinearConv") || n.isOp("QLinearMatMul")) return 3;
  if (n.isOp("Conv") || n.isOp("ConvTranspose") || n.isOp("Gemm") || n.isOp("MatMul") ||
      n.isOp("ConvInteger") || n.isOp("MatMulInteger") || n.isOp("PRelu") || n.isOp("RNN") ||
      n.isOp("GRU") || n.isOp("LSTM"))
    return 1;
  return -1;
}

// Inputs that are settings, not learnt weights (bounds, pads, scales, shapes, exponents): a
// float tensor read there is not a parameter, e.g. the scalar Constants of ReLU6 = Clip(0, 6).
const std::unordered_map<std::string, std::vector<size_t>>& settingInputs() {
  static const std::unordered_map<std::string, std::vector<size_t>> table = {
      {"Clip", {1, 2}},
      {"Pad", {1, 2, 3}},
      {"Resize", {1, 2, 3}},
      {"Upsample", {1}},
      {"Reshape", {1}},
      {"Expand", {1}},
      {"Tile", {1}},
      {"Slice", {1, 2, 3, 4}},
      {"Squeeze", {1}},
      {"Unsqueeze", {1}},
      {"TopK", {1}},
      {"Range", {0, 1, 2}},
      {"ConstantOfShape", {0}},
      {"OneHot", {1, 2}},
      {"Split", {1}},
      {"Dropout", {1, 2}},
      {"Pow", {1}},
      {"CumSum", {1}},
      {"ReduceSum", {1}},
      {"ReduceMean", {1}},
      {"ReduceMax", {1}},
      {"ReduceMin", {1}},
      {"ReduceProd", {1}},
      {"ReduceL2", {1}},
  };
  return table;
}

}  // namespace

bool isSettingInput(const Node& n, size_t index) {
  if (!n.isDefaultDomain()) return false;
  auto it = settingInputs().find(n.opType());
  if (it == settingInputs().end()) return false;
  return std::find(it->second.begin(), it->second.end(), index) != it->second.end();
}

bool isWeightTensor(const Tensor& t) {
  return t.dtype() != DType::kInt64 && t.dtype() != DType::kBool && t.dtype() != DType::kString &&
         t.dtype() != DType::kUndefined;
}

namespace {

// The size a symbolic dim counts at: its graph's counting size of the symbol, or 1.
int64_t countedSize(const Value& value, const Dim& d) {
  const ScaledSymbol scaled = scaledSymbol(d.param);
  if (!value.graph()) return scaled.at(1);
  const auto& sizes = value.graph()->countingSizes();
  auto it = sizes.find(scaled.name);
  return scaled.at(it == sizes.end() ? 1 : it->second);
}

}  // namespace

std::optional<Shape> oneSampleShape(const Value& value) {
  if (const Tensor* t = value.constantData()) return t->shape();
  const auto& shape = value.provenDims() ? value.provenDims() : value.type().shape;
  if (!shape) return std::nullopt;
  Shape s;
  for (const Dim& d : *shape) s.push_back(d.isKnown() ? d.value : countedSize(value, d));
  return s;
}

std::optional<Shape> ShapeSource::input(const Node& node, size_t i) const {
  const Value* v = node.input(i);
  if (!v) return std::nullopt;
  return oneSampleShape(*v);
}

std::optional<Shape> ShapeSource::output(const Node& node, size_t i) const {
  const Value* v = node.output(i);
  if (!v) return std::nullopt;
  return oneSampleShape(*v);
}

std::optional<int64_t> nodeMacs(const Node& node, bool* has_rule, const ShapeSource* shapes) {
  if (has_rule) *has_rule = false;
  if (!node.isDefaultDomain()) return std::nullopt;
  auto it = macRules().find(node.opType());
  if (it == macRules().end()) return std::nullopt;
  if (has_rule) *has_rule = true;
  return it->second(node, shapes ? *shapes : modelShapes());
}

ModelStats computeModelStats(const Graph& graph) {
  ModelStats stats;
  std::unordered_set<const Tensor*> counted;
  std::unordered_set<const Tensor*> settings;  // read at setting inputs (Clip bounds, ...)
  auto countTensor = [&](const Tensor* t) {
    if (!t || !isWeightTensor(*t) || !counted.insert(t).second) return;
    stats.params += t->numel();
    stats.weight_bytes_by_dtype[dtypeName(t->dtype())] += static_cast<int64_t>(t->byteSize());
  };
  auto order = graph.topologicalOrder();
  std::vector<const Node*> nodes;
  if (order.isOk()) {
    for (const Node* n : order.value()) nodes.push_back(n);
  } else {
    for (const auto& n : graph.nodes()) nodes.push_back(n.get());
  }
  for (const Node* n : nodes) {
    const std::string key = n->isDefaultDomain() ? n->opType() : n->domain() + "." + n->opType();
    ++stats.op_histogram[key];
    if (n->isOp("Constant")) continue;  // its tensor is counted where it is read
    LayerStats layer;
    layer.node = n;
    for (size_t i = 0; i < n->inputs().size(); ++i) {
      const Value* in = n->input(i);
      const Tensor* t = in ? in->constantData() : nullptr;
      if (t && isSettingInput(*n, i)) {
        settings.insert(t);
        continue;
      }
      if (t && isWeightTensor(*t)) {
        layer.params += t->numel();
        countTensor(t);
      }
    }
    const int w = mainWeightInput(*n);
    if (w >= 0 && n->input(w) && n->input(w)->constantData())
      layer.weight_shape = n->input(w)->constantData()->shape();
    layer.macs = nodeMacs(*n, &layer.has_macs_rule);
    if (layer.has_macs_rule && !layer.macs) ++stats.layers_with_unknown_macs;
    if (layer.macs) stats.macs += *layer.macs;
    if (layer.params > 0 || layer.has_macs_rule) stats.layers.push_back(layer);
  }
  // Weights not read by any node (or only by graph outputs) still count towards the total.
  for (const auto& v : graph.values())
    if (!settings.count(v->initializer())) countTensor(v->initializer());
  return stats;
}

std::string symbolicInputDims(const Graph& graph) {
  std::string all;
  for (const Value* v : graph.inputs()) {
    if (v->isInitializer() || !v->type().shape) continue;
    std::string dims;
    const auto& shape = *v->type().shape;
    for (size_t a = 1; a < shape.size(); ++a)
      if (!shape[a].isKnown() && !graph.countingSizes().count(shape[a].param))
        dims += (dims.empty() ? "" : ", ") + (shape[a].param.empty() ? "?" : shape[a].param);
    if (!dims.empty()) all += (all.empty() ? "" : "; ") + v->name() + ": " + dims;
  }
  return all;
}

}  // namespace nnc
