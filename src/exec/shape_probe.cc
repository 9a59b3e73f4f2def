#include "nncompress/exec/shape_probe.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <new>
#include <unordered_map>
#include <unordered_set>

#include "nncompress/exec/executor.h"

namespace nnc::exec {
namespace {

// Ops whose output shapes depend on the contents of their inputs, whatever those are.
bool shapeFollowsContents(const Node& n) {
  static const std::unordered_set<std::string> ops = {
      "NonZero", "Unique", "NonMaxSuppression", "Compress",      "Loop",
      "If",      "Scan",   "StringSplit",       "RegexFullMatch"};
  return !n.isDefaultDomain() || ops.count(n.opType()) > 0;
}

// Inputs whose contents set the output shape (targets, starts, pads, scales, axes, counts).
bool setsOutputShape(const Node& n, size_t index) {
  static const std::unordered_map<std::string, std::vector<size_t>> table = {
      {"Reshape", {1}},
      {"Expand", {1}},
      {"Tile", {1}},
      {"Slice", {1, 2, 3, 4}},
      {"Pad", {1, 3}},
      {"Resize", {1, 2, 3}},
      {"Upsample", {1}},
      {"Squeeze", {1}},
      {"Unsqueeze", {1}},
      {"TopK", {1}},
      {"Range", {0, 1, 2}},
      {"ConstantOfShape", {0}},
      {"OneHot", {1}},
      {"Split", {1}},
      {"ReduceSum", {1}},
      {"ReduceMean", {1}},
      {"ReduceMax", {1}},
      {"ReduceMin", {1}},
      {"ReduceProd", {1}},
      {"ReduceL1", {1}},
      {"ReduceL2", {1}},
      {"ReduceLogSum", {1}},
      {"ReduceLogSumExp", {1}},
      {"ReduceSumSquare", {1}},
      {"CenterCropPad", {1}},
      {"Col2Im", {1, 2}},
      {"DFT", {1, 2}},
      {"STFT", {2, 3}},
      {"MelWeightMatrix", {0, 1}},
      {"MaxUnpool", {2}}};
  auto it = table.find(n.opType());
  return it != table.end() && std::count(it->second.begin(), it->second.end(), index) > 0;
}

// Values whose shapes only the graph inputs' shapes decide. Contents of graph inputs flow
// through every op except Shape and Size of a decided shape; a shape-setting input carrying
// them, or an op whose shape follows contents, makes the output shape (and every shape after
// it) untrusted.
std::unordered_set<const Value*> shapeDecidedValues(const Graph& graph) {
  std::unordered_set<const Value*> carries_contents;
  std::unordered_set<const Value*> decided;
  for (const Value* v : graph.inputs()) {
    if (!v->isInitializer()) carries_contents.insert(v);
    decided.insert(v);
  }
  auto isDecided = [&](const Value* v) { return !v || v->constantData() || decided.count(v); };
  for (const auto& node : graph.nodes()) {
    const Node& n = *node;
    bool contents = false;
    bool trusted = !shapeFollowsContents(n);
    for (size_t i = 0; i < n.numInputs(); ++i) {
      const Value* in = n.input(i);
      if (!in) continue;
      const bool in_contents = carries_contents.count(in) > 0;
      contents = contents || in_contents;
      trusted = trusted && isDecided(in) && !(in_contents && setsOutputShape(n, i));
    }
    // Shape and Size read only a shape: their contents follow input contents exactly when that
    // shape does (Shape of NonZero's output carries NonZero's count).
    if (n.isOp("Shape") || n.isOp("Size")) contents = !isDecided(n.input(0));
    for (const Value* out : n.outputs()) {
      if (!out) continue;
      if (contents) carries_contents.insert(out);
      if (trusted) decided.insert(out);
    }
  }
  return decided;
}

// One symbolic graph-input dim and the sizes it takes in the two runs.
struct Symbol {
  int64_t first = 0;
  int64_t second = 0;
  bool batch = false;  // a first axis: any whole multiple; other symbols: powers of two
};

std::string symbolKey(const Value& input, size_t axis, const Dim& d) {
  return d.param.empty() ? input.name() + ":" + std::to_string(axis) : d.param;
}

// Batch-like symbols (any input's first axis) run at 3 and 5; others (image sides, sequence
// lengths) at 64 and 96, the next at 192 and 288, then 320 and 480 (odd multiples of 64, and 1.5
// times that): different, and not 1, where broadcasting and squeezing behave apart. The sides'
// steps between the runs (32, 96, 160) differ in their odd parts, so a power-of-two multiple or
// fraction of one never passes for another (a batch multiple: see followedSymbol); halving stays
// exact down to a 32nd.
StatusOr<std::map<std::string, Symbol>> inputSymbols(const std::vector<const Value*>& inputs) {
  static constexpr int64_t kSides[] = {64, 192, 320, 448};
  std::map<std::string, Symbol> symbols;
  size_t sides = 0;
  for (const Value* v : inputs) {
    if (!v->type().shape) return invalidArgument("input '" + v->name() + "' has no known rank");
    const auto& dims = *v->type().shape;
    for (size_t a = 0; a < dims.size(); ++a) {
      if (dims[a].isKnown()) continue;
      Symbol& s = symbols[symbolKey(*v, a, dims[a])];
      if (a == 0) {
        s = {3, 5, true};
      } else if (s.first == 0) {
        const int64_t side = kSides[std::min(sides++, std::size(kSides) - 1)];
        s = {side, side * 3 / 2, false};
      }
    }
  }
  return symbols;
}

StatusOr<Tensor> probeInput(const Value& v, const std::map<std::string, Symbol>& symbols,
                            bool second) {
  Shape shape;
  const auto& dims = *v.type().shape;
  for (size_t a = 0; a < dims.size(); ++a) {
    if (dims[a].isKnown()) {
      shape.push_back(dims[a].value);
      continue;
    }
    const Symbol& s = symbols.at(symbolKey(v, a, dims[a]));
    shape.push_back(second ? s.second : s.first);
  }
  if (v.dtype() == DType::kString || v.dtype() == DType::kUndefined)
    return invalidArgument("input '" + v.name() + "' is not a numeric tensor");
  Tensor t(v.dtype(), shape);
  if (v.dtype() == DType::kFloat32) {
    uint32_t state = 12345;  // values in [0, 1): exponents, logs and roots stay finite
    for (float& x : t.mutableData<float>()) {
      state = state * 1664525u + 1013904223u;
      x = static_cast<float>(state >> 8) / 16777216.0f;
    }
  }
  return t;
}

using ObservedShapes = std::unordered_map<const Value*, Shape>;

StatusOr<ObservedShapes> runOnce(Executor& executor, const std::map<std::string, Symbol>& symbols,
                                 bool second) {
  std::vector<Tensor> inputs;
  for (const Value* v : executor.inputs()) {
    NNC_ASSIGN_OR_RETURN(Tensor t, probeInput(*v, symbols, second));
    inputs.push_back(std::move(t));
  }
  ObservedShapes shapes;
  auto observe = [&](const Value& v, const Tensor& t) { shapes[&v] = t.shape(); };
  NNC_RETURN_IF_ERROR(executor.run(std::move(inputs), observe).status());
  return shapes;
}

// An input's symbol, or one scaled and shifted ("4*N", "H/2", "T/2-2").
bool namesSymbol(const std::string& param, const std::map<std::string, Symbol>& symbols) {
  return symbols.count(scaledSymbol(param).name) > 0;
}

bool isIncomplete(const ValueType& type, const std::map<std::string, Symbol>& symbols) {
  if (!type.isTensor()) return false;
  if (!type.shape) return true;
  return std::any_of(type.shape->begin(), type.shape->end(), [&](const Dim& d) {
    return !d.isKnown() && (d.param.empty() || !namesSymbol(d.param, symbols));
  });
}

bool isPowerOfTwo(int64_t k) { return k > 0 && (k & (k - 1)) == 0; }

// How `first` and `second` follow symbol s (nullopt if they do not): a batch symbol by a whole
// multiple ("4*N": heads folded into the batch); another one by a power of two up or down and
// an offset smaller than that ("H/2" after a stride, "T/2-2" then an unpadded Conv, "2*W").
std::optional<Dim> followedSymbol(int64_t first, int64_t second, const std::string& name,
                                  const Symbol& s) {
  const int64_t grew = second - first, step = s.second - s.first;
  if (s.batch) {
    if (first % s.first != 0 || first / s.first * s.second != second) return std::nullopt;
    return ScaledSymbol{name, first / s.first}.dim();
  }
  if (grew <= 0) return std::nullopt;
  ScaledSymbol scaled{name};
  if (grew % step == 0 && isPowerOfTwo(grew / step))
    scaled.factor = grew / step;
  else if (step % grew == 0 && isPowerOfTwo(step / grew))
    scaled.divisor = step / grew;
  else
    return std::nullopt;
  const int64_t at_first = s.first * scaled.factor / scaled.divisor;  // exact: see inputSymbols
  scaled.offset = first - at_first;
  // A batch multiple k*N looks like a side scaled to 4k and shifted by -k (3k and 5k on the
  // line through 64 and 96): offsets stay under an eighth, so the two are never confused.
  if (std::abs(scaled.offset) * 8 > at_first) return std::nullopt;
  return scaled.dim();
}

// The dim both runs show: static when they agree, an input symbol that took the same sizes
// ("N"), one scaled and shifted ("4*N", "H/2", "T/2-2"), or `old` (unknown) when it varies
// some other way.
Dim observedDim(int64_t first, int64_t second, const Dim& old,
                const std::map<std::string, Symbol>& symbols) {
  if (first == second) return Dim::known(first);
  std::vector<Dim> matches;  // two symbols that took the same sizes cannot be told apart
  for (const auto& [name, s] : symbols) {
    if (name.find(':') != std::string::npos) continue;
    if (auto d = followedSymbol(first, second, name, s)) matches.push_back(*d);
  }
  return matches.size() == 1 ? matches[0] : old;
}

// The completed type, or nullopt when the runs contradict what is already known.
std::optional<ValueType> completedType(const ValueType& type, const Shape& first,
                                       const Shape& second,
                                       const std::map<std::string, Symbol>& symbols) {
  if (first.size() != second.size()) return std::nullopt;
  if (type.shape && type.shape->size() != first.size()) return std::nullopt;
  ValueType out = type;
  if (!out.shape) out.shape = std::vector<Dim>(first.size());
  for (size_t a = 0; a < first.size(); ++a) {
    Dim& d = (*out.shape)[a];
    if (d.isKnown()) {
      if (d.value != first[a] || d.value != second[a]) return std::nullopt;
      continue;
    }
    if (!d.param.empty() && namesSymbol(d.param, symbols)) continue;
    d = observedDim(first[a], second[a], d, symbols);
  }
  return out;
}

// A value whose shape follows contents still has the rank its shape inputs' lengths decide.
std::optional<ValueType> rankOnly(const ValueType& type, const Shape& first, const Shape& second) {
  if (type.shape || first.size() != second.size()) return std::nullopt;
  ValueType out = type;
  out.shape = std::vector<Dim>(first.size());
  return out;
}

}  // namespace

ShapeProbeResult completeShapesByRunning(Model& model) {
  ShapeProbeResult result;
  Graph& graph = *model.graph;
  std::vector<const Value*> fed;  // what Executor::inputs() will be
  for (const Value* v : graph.inputs())
    if (!v->isInitializer()) fed.push_back(v);
  auto symbols = inputSymbols(fed);
  if (!symbols.isOk()) {
    result.not_run_reason = symbols.status().message();
    return result;
  }
  std::vector<Value*> incomplete;
  for (const auto& node : graph.nodes())
    for (Value* out : node->outputs())
      if (out && !out->provenDims() && isIncomplete(out->type(), *symbols))
        incomplete.push_back(out);
  if (incomplete.empty()) return result;  // the usual case: no executor is built
  auto executor = Executor::create(model);
  if (!executor.isOk()) {
    result.not_run_reason = executor.status().message();
    return result;
  }

  StatusOr<ObservedShapes> first = internalError("not run");
  StatusOr<ObservedShapes> second = first;
  try {
    first = runOnce(**executor, *symbols, false);
    second = first.isOk() ? runOnce(**executor, *symbols, true) : first;
  } catch (const std::bad_alloc&) {  // a model whose declared sizes do not fit in memory
    second = internalError("out of memory");
  }
  if (!second.isOk()) {
    result.not_run_reason = second.status().message();
    return result;
  }
  result.ran = true;
  const auto decided = shapeDecidedValues(graph);
  for (Value* v : incomplete) {
    auto a = first->find(v);
    auto b = second->find(v);
    if (a == first->end() || b == second->end()) continue;
    auto type = decided.count(v) ? completedType(v->type(), a->second, b->second, *symbols)
                                 : rankOnly(v->type(), a->second, b->second);
    if (!type || *type == v->type()) continue;
    ++result.values_completed;
    if (!v->isGraphOutput()) {
      v->setType(std::move(*type));
    } else if (type->shape) {  // the file's interface stays as declared
      v->setProvenDims(std::move(*type->shape));
    }
  }
  return result;
}

}  // namespace nnc::exec
