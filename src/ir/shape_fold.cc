#include "nncompress/ir/shape_fold.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <string>

namespace nnc {
namespace {

constexpr int64_t kMaxFoldedElements = 64;

// A small int64 array with a shape: the only kind of data shape subgraphs carry. Elements may be
// unknown, as the batch entry of Shape(x) is when the batch is symbolic: kUnknown, or a symbol
// code naming the symbolic dim it equals ("N"), which lets Reshape targets like [N, -1] resolve.
// Gather, Slice, Concat and friends carry both through; arithmetic on them gives kUnknown.
constexpr int64_t kUnknown = std::numeric_limits<int64_t>::min();
constexpr int64_t kSymbolBase = kUnknown + 1;  // symbol i is kSymbolBase + i
constexpr int64_t kMaxSymbols = 1 << 20;
bool isValue(int64_t v) { return v >= kSymbolBase + kMaxSymbols; }

struct IntArray {
  Shape shape;
  std::vector<int64_t> data;
  bool fullyKnown() const { return std::all_of(data.begin(), data.end(), isValue); }
};

// Symbol names <-> codes, for one folding run.
struct Symbols {
  std::vector<std::string> names;
  int64_t code(const std::string& name) {
    for (size_t i = 0; i < names.size(); ++i)
      if (names[i] == name) return kSymbolBase + static_cast<int64_t>(i);
    if (names.size() >= static_cast<size_t>(kMaxSymbols)) return kUnknown;
    names.push_back(name);
    return kSymbolBase + static_cast<int64_t>(names.size() - 1);
  }
  const std::string* name(int64_t v) const {
    if (v < kSymbolBase || isValue(v)) return nullptr;
    // A constant from the file may hold any int64, symbol codes too (found by fuzz/).
    if (static_cast<uint64_t>(v - kSymbolBase) >= names.size()) return nullptr;
    return &names[static_cast<size_t>(v - kSymbolBase)];
  }
};
thread_local Symbols* current_symbols = nullptr;
thread_local int64_t current_opset = 0;

bool isShapeDType(DType d) { return d == DType::kInt64 || d == DType::kInt32; }
// Shape subgraphs also carry bool masks (Equal feeding Where): kept as 0/1.
bool isFoldDType(DType d) { return isShapeDType(d) || d == DType::kBool; }

using Known = std::unordered_map<const Value*, IntArray>;
using FoldFn = std::function<std::optional<IntArray>(const Node&, const Known&)>;

const IntArray* known(const Node& n, size_t i, const Known& k) {
  const Value* v = n.input(i);
  if (!v) return nullptr;
  auto it = k.find(v);
  return it == k.end() ? nullptr : &it->second;
}

int64_t normaliseIndex(int64_t i, int64_t size) { return i < 0 ? i + size : i; }

std::optional<IntArray> foldShape(const Node& n, const Known&) {
  const Value* x = n.input(0);
  if (!x || !x->type().shape) return std::nullopt;
  Shape dims;
  for (const Dim& d : *x->type().shape) {
    if (d.isKnown())
      dims.push_back(d.value);
    else if (!d.param.empty() && current_symbols)
      dims.push_back(current_symbols->code(d.param));
    else
      dims.push_back(kUnknown);
  }
  const Shape* shape = &dims;
  const int64_t rank = static_cast<int64_t>(shape->size());
  int64_t start = std::clamp<int64_t>(normaliseIndex(n.intAttr("start", 0), rank), 0, rank);
  int64_t end = std::clamp<int64_t>(normaliseIndex(n.intAttr("end", rank), rank), 0, rank);
  IntArray out;
  for (int64_t i = start; i < end; ++i) out.data.push_back((*shape)[i]);
  out.shape = {static_cast<int64_t>(out.data.size())};
  return out;
}

std::optional<IntArray> foldSize(const Node& n, const Known&) {
  const Value* x = n.input(0);
  auto shape = x ? x->staticShape() : std::nullopt;
  const int64_t numel = shape ? shapeNumel(*shape) : -1;
  if (numel < 0) return std::nullopt;  // -1: overflow, which would read as Reshape's -1
  return IntArray{{}, {numel}};
}

std::optional<IntArray> foldIdentity(const Node& n, const Known& k) {
  const IntArray* a = known(n, 0, k);
  return a ? std::optional<IntArray>(*a) : std::nullopt;
}

std::optional<IntArray> foldCast(const Node& n, const Known& k) {
  const int64_t to = n.intAttr("to", 0);
  if (to != static_cast<int64_t>(DType::kInt64) && to != static_cast<int64_t>(DType::kInt32))
    return std::nullopt;
  return foldIdentity(n, k);
}

// Gather on a 1-D (or scalar-indexed) array along axis 0.
std::optional<IntArray> foldGather(const Node& n, const Known& k) {
  const IntArray* data = known(n, 0, k);
  const IntArray* idx = known(n, 1, k);
  if (!data || !idx || data->shape.size() != 1 || n.intAttr("axis", 0) != 0) return std::nullopt;
  IntArray out{idx->shape, {}};
  const int64_t size = data->shape[0];
  for (int64_t i : idx->data) {
    i = normaliseIndex(i, size);
    if (i < 0 || i >= size) return std::nullopt;
    out.data.push_back(data->data[i]);
  }
  return out;
}

std::vector<int64_t> axesOf(const Node& n, const Known& k) {
  if (const IntArray* axes = known(n, 1, k)) return axes->data;
  return n.intsAttr("axes");
}

std::optional<IntArray> foldUnsqueeze(const Node& n, const Known& k) {
  const IntArray* a = known(n, 0, k);
  if (!a) return std::nullopt;
  std::vector<int64_t> axes = axesOf(n, k);
  const int64_t out_rank = static_cast<int64_t>(a->shape.size() + axes.size());
  for (int64_t& ax : axes) ax = normaliseIndex(ax, out_rank);
  std::sort(axes.begin(), axes.end());
  IntArray out{a->shape, a->data};
  for (int64_t ax : axes) {
    if (ax < 0 || ax > static_cast<int64_t>(out.shape.size())) return std::nullopt;
    out.shape.insert(out.shape.begin() + ax, 1);
  }
  return out;
}

std::optional<IntArray> foldSqueeze(const Node& n, const Known& k) {
  const IntArray* a = known(n, 0, k);
  if (!a) return std::nullopt;
  std::vector<int64_t> axes = axesOf(n, k);
  const int64_t rank = static_cast<int64_t>(a->shape.size());
  IntArray out{{}, a->data};
  for (int64_t d = 0; d < rank; ++d) {
    bool drop = axes.empty() ? a->shape[d] == 1 : false;
    for (int64_t ax : axes) drop |= normaliseIndex(ax, rank) == d;
    if (!drop) out.shape.push_back(a->shape[d]);
  }
  return out;
}

std::optional<IntArray> foldConcat(const Node& n, const Known& k) {
  IntArray out{{0}, {}};
  for (size_t i = 0; i < n.numInputs(); ++i) {
    const IntArray* a = known(n, i, k);
    if (!a || a->shape.size() != 1) return std::nullopt;
    out.data.insert(out.data.end(), a->data.begin(), a->data.end());
  }
  out.shape[0] = static_cast<int64_t>(out.data.size());
  return out;
}

// Elementwise on equal shapes or with a one-element operand (the cases shape code produces).
std::optional<IntArray> foldBinary(const Node& n, const Known& k,
                                   int64_t (*op)(int64_t, int64_t, bool*)) {
  const IntArray* a = known(n, 0, k);
  const IntArray* b = known(n, 1, k);
  if (!a || !b) return std::nullopt;
  if (a->data.empty() || b->data.empty()) return std::nullopt;  // [1] op [0] read b[0] (fuzz/)
  const bool a_scalar = a->data.size() == 1, b_scalar = b->data.size() == 1;
  if (!(a->shape == b->shape || a_scalar || b_scalar)) return std::nullopt;
  // The output has the higher rank (a one-element operand may still add axes of size 1); a
  // one-element operand of higher rank than a longer one would change its shape: not folded.
  const IntArray& wide = a->shape.size() >= b->shape.size() ? *a : *b;
  const IntArray& longer = a_scalar ? *b : *a;
  if (!(a->shape == b->shape || (a_scalar && b_scalar) || &wide == &longer)) return std::nullopt;
  IntArray out{wide.shape, {}};
  const size_t count = std::max(a->data.size(), b->data.size());
  bool ok = true;
  for (size_t i = 0; i < count; ++i) {
    const int64_t x = a->data[a_scalar ? 0 : i], y = b->data[b_scalar ? 0 : i];
    if (!isValue(x) || !isValue(y)) {
      out.data.push_back(kUnknown);
      continue;
    }
    // Ops report int64 overflow through `ok`; a result in the symbol range is no value either.
    const int64_t r = op(x, y, &ok);
    if (!isValue(r)) ok = false;
    out.data.push_back(r);
  }
  if (!ok) return std::nullopt;
  return out;
}

// Row-major strides of a shape.
std::vector<int64_t> stridesOf(const Shape& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (size_t d = shape.size(); d-- > 1;) strides[d - 1] = strides[d] * shape[d];
  return strides;
}

// Calls `visit(flat input index)` for every element of a strided box over `shape`, in row-major
// order of the box: axis d runs from start[d] by step[d], count[d] times.
void visitBox(const Shape& shape, const std::vector<int64_t>& start,
              const std::vector<int64_t>& step, const Shape& count,
              const std::function<void(int64_t)>& visit) {
  const std::vector<int64_t> strides = stridesOf(shape);
  const int64_t total = shapeNumel(count);
  std::vector<int64_t> at(count.size(), 0);
  for (int64_t i = 0; i < total; ++i) {
    int64_t flat = 0;
    for (size_t d = 0; d < count.size(); ++d) flat += (start[d] + at[d] * step[d]) * strides[d];
    visit(flat);
    for (size_t d = count.size(); d-- > 0;) {
      if (++at[d] < count[d]) break;
      at[d] = 0;
    }
  }
}

// The fully known 1-D contents of input i, or nullopt. A constant's entries are literals even in
// the range that codes symbols (torch exports reverse Slices with ends = INT64_MIN + 1).
std::optional<std::vector<int64_t>> knownList(const Node& n, size_t i, const Known& k) {
  const Tensor* t = n.input(i) ? n.input(i)->constantData() : nullptr;
  if (t && t->rank() <= 1 && isShapeDType(t->dtype())) return t->toInt64Vector();
  const IntArray* a = known(n, i, k);
  if (!a || a->shape.size() > 1 || !a->fullyKnown()) return std::nullopt;
  return a->data;
}

// Slice (1: attributes; 10, 11, 13: inputs with optional axes and steps) on any rank. Bounds are
// clamped as the spec says: to [0, dim] for a positive step, [0, dim - 1] (start) and
// [-1, dim - 1] (end) for a negative one.
std::optional<IntArray> foldSlice(const Node& n, const Known& k) {
  const IntArray* a = known(n, 0, k);
  if (!a || a->shape.empty()) return std::nullopt;
  const int64_t rank = static_cast<int64_t>(a->shape.size());
  std::vector<int64_t> starts, ends, axes, steps;
  if (n.numInputs() >= 3) {
    auto s = knownList(n, 1, k), e = knownList(n, 2, k);
    if (!s || !e || (n.input(3) && !knownList(n, 3, k)) || (n.input(4) && !knownList(n, 4, k)))
      return std::nullopt;
    starts = *s;
    ends = *e;
    if (n.input(3)) axes = *knownList(n, 3, k);
    if (n.input(4)) steps = *knownList(n, 4, k);
  } else {
    starts = n.intsAttr("starts");
    ends = n.intsAttr("ends");
    axes = n.intsAttr("axes");
  }
  if (axes.empty())
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size())
    return std::nullopt;
  std::vector<int64_t> first(rank, 0), step(rank, 1);
  Shape count = a->shape;
  std::vector<bool> seen(rank, false);
  for (size_t i = 0; i < starts.size(); ++i) {
    const int64_t axis = normaliseIndex(axes[i], rank);
    if (axis < 0 || axis >= rank || seen[axis] || steps[i] == 0 || steps[i] == kUnknown)
      return std::nullopt;
    seen[axis] = true;
    const int64_t dim = a->shape[axis], st = steps[i];
    if (dim == 0) continue;  // nothing to take (and no [0, dim - 1] to clamp to)
    const int64_t lo = st > 0 ? 0 : -1, hi = st > 0 ? dim : dim - 1;
    const int64_t begin = std::clamp<int64_t>(normaliseIndex(starts[i], dim), 0, hi);
    const int64_t end = std::clamp<int64_t>(normaliseIndex(ends[i], dim), lo, hi);
    const int64_t span = st > 0 ? end - begin : begin - end;
    const int64_t abs_step = st > 0 ? st : -st;
    first[axis] = begin;
    step[axis] = st;
    count[axis] = span <= 0 ? 0 : span / abs_step + (span % abs_step != 0);
  }
  IntArray out{count, {}};
  visitBox(a->shape, first, step, count, [&](int64_t flat) { out.data.push_back(a->data[flat]); });
  return out;
}

// Transpose (1, 13) of a small integer array: perm defaults to reversing the axes.
std::optional<IntArray> foldTranspose(const Node& n, const Known& k) {
  const IntArray* a = known(n, 0, k);
  if (!a) return std::nullopt;
  const size_t rank = a->shape.size();
  std::vector<int64_t> perm = n.intsAttr("perm");
  if (perm.empty())
    for (size_t i = rank; i-- > 0;) perm.push_back(static_cast<int64_t>(i));
  std::vector<int64_t> sorted = perm;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i)
    if (sorted[i] != static_cast<int64_t>(i) || sorted.size() != rank) return std::nullopt;
  const std::vector<int64_t> in_strides = stridesOf(a->shape);
  IntArray out{Shape(rank), {}};
  std::vector<int64_t> strides(rank);
  for (size_t d = 0; d < rank; ++d) {
    out.shape[d] = a->shape[perm[d]];
    strides[d] = in_strides[perm[d]];
  }
  // Output axis d walks input axis perm[d]: a box over a 1-D view with the permuted strides.
  const int64_t total = shapeNumel(out.shape);
  std::vector<int64_t> at(rank, 0);
  for (int64_t i = 0; i < total; ++i) {
    int64_t flat = 0;
    for (size_t d = 0; d < rank; ++d) flat += at[d] * strides[d];
    out.data.push_back(a->data[flat]);
    for (size_t d = rank; d-- > 0;) {
      if (++at[d] < out.shape[d]) break;
      at[d] = 0;
    }
  }
  return out;
}

// Reshape (5, 13, 14) of a small integer array: 0 copies the input dim (unless allowzero), one
// -1 takes the rest. The data keeps its order.
std::optional<IntArray> foldReshapeData(const Node& n, const Known& k) {
  const IntArray* a = known(n, 0, k);
  auto target = knownList(n, 1, k);
  if (!a || !target || current_opset < 5) return std::nullopt;
  const bool allow_zero = n.intAttr("allowzero", 0) != 0;
  Shape shape;
  int infer_at = -1;
  int64_t product = 1;
  for (size_t i = 0; i < target->size(); ++i) {
    int64_t d = (*target)[i];
    if (d == 0 && !allow_zero) {
      if (i >= a->shape.size()) return std::nullopt;
      d = a->shape[i];
    }
    if (d == -1) {
      if (infer_at >= 0) return std::nullopt;
      infer_at = static_cast<int>(i);
      shape.push_back(1);
      continue;
    }
    if (d < 0 || __builtin_mul_overflow(product, d, &product)) return std::nullopt;
    shape.push_back(d);
  }
  const int64_t numel = static_cast<int64_t>(a->data.size());
  if (infer_at >= 0) {
    if (product == 0 || numel % product != 0) return std::nullopt;
    shape[infer_at] = numel / product;
  } else if (product != numel) {
    return std::nullopt;
  }
  return IntArray{shape, a->data};
}

// Range (11): ceil((limit - start) / delta) elements, none when that is negative.
std::optional<IntArray> foldRange(const Node& n, const Known& k) {
  auto start = knownList(n, 0, k), limit = knownList(n, 1, k), delta = knownList(n, 2, k);
  if (current_opset < 11 || !start || !limit || !delta || start->size() != 1 ||
      limit->size() != 1 || delta->size() != 1 || (*delta)[0] == 0)
    return std::nullopt;
  const int64_t s = (*start)[0], l = (*limit)[0], d = (*delta)[0];
  int64_t span = 0;
  if (__builtin_sub_overflow(d > 0 ? l : s, d > 0 ? s : l, &span) || d == kUnknown)
    return std::nullopt;
  const int64_t step = d > 0 ? d : -d;
  const int64_t count = span <= 0 ? 0 : span / step + (span % step != 0);
  if (count > kMaxFoldedElements) return std::nullopt;
  IntArray out{{count}, {}};
  for (int64_t i = 0; i < count; ++i) out.data.push_back(s + i * d);
  return out;
}

// Equal (opset 7 and later: numpy broadcasting, no `broadcast` attribute) gives 0/1, the bool
// output kept as int; an unknown operand gives an unknown element.
std::optional<IntArray> foldEqual(const Node& n, const Known& k) {
  if (current_opset < 7) return std::nullopt;
  return foldBinary(n, k, [](int64_t a, int64_t b, bool*) -> int64_t { return a == b ? 1 : 0; });
}

// Where (opset 9, 16): every operand either has the output's shape or one element.
std::optional<IntArray> foldWhere(const Node& n, const Known& k) {
  const IntArray* in[3] = {known(n, 0, k), known(n, 1, k), known(n, 2, k)};
  const IntArray* big = nullptr;
  for (const IntArray* a : in) {
    if (!a || a->data.empty()) return std::nullopt;
    if (a->data.size() > 1) {
      if (big && big->shape != a->shape) return std::nullopt;
      big = a;
    }
  }
  if (!big)
    for (const IntArray* a : in)
      if (!big || a->shape.size() > big->shape.size()) big = a;
  for (const IntArray* a : in)
    if (a->shape.size() > big->shape.size()) return std::nullopt;  // [1,1] with [3]: rank grows
  IntArray out{big->shape, {}};
  for (size_t i = 0; i < big->data.size(); ++i) {
    auto at = [&](const IntArray* a) { return a->data[a->data.size() == 1 ? 0 : i]; };
    const int64_t c = at(in[0]), x = at(in[1]), y = at(in[2]);
    if (isValue(c))
      out.data.push_back(c != 0 ? x : y);
    else
      out.data.push_back(x == y && isValue(x) ? x : kUnknown);
  }
  return out;
}

// The one-element integer or bool `value` of ConstantOfShape (the default is float 0: no fold).
const Tensor* constantOfShapeValue(const Node& n) {
  const Attribute* value = n.findAttribute("value");
  if (!value || value->kind != AttrKind::kTensor || value->tensors.size() != 1) return nullptr;
  const Tensor& t = value->tensors[0];
  return t.numel() == 1 && isFoldDType(t.dtype()) ? &t : nullptr;
}

// ConstantOfShape (opset 9 and later; later versions only add element types): an empty shape
// input gives a scalar.
std::optional<IntArray> foldConstantOfShape(const Node& n, const Known& k) {
  const IntArray* dims = known(n, 0, k);
  const Tensor* value = constantOfShapeValue(n);
  if (current_opset < 9 || !dims || !value || dims->shape.size() != 1 || !dims->fullyKnown())
    return std::nullopt;
  int64_t numel = 1;
  for (int64_t d : dims->data)
    if (d < 0 || __builtin_mul_overflow(numel, d, &numel) || numel > kMaxFoldedElements)
      return std::nullopt;
  return IntArray{dims->data, std::vector<int64_t>(numel, value->toInt64Vector()[0])};
}

const std::unordered_map<std::string, FoldFn>& foldRules() {
  static const std::unordered_map<std::string, FoldFn> rules = {
      {"Shape", foldShape},
      {"Size", foldSize},
      {"Identity", foldIdentity},
      {"Cast", foldCast},
      {"Gather", foldGather},
      {"Unsqueeze", foldUnsqueeze},
      {"Squeeze", foldSqueeze},
      {"Concat", foldConcat},
      {"Slice", foldSlice},
      {"Equal", foldEqual},
      {"Where", foldWhere},
      {"ConstantOfShape", foldConstantOfShape},
      {"Add",
       [](const Node& n, const Known& k) {
         return foldBinary(n, k, [](int64_t a, int64_t b, bool* ok) {
           int64_t r = 0;
           if (__builtin_add_overflow(a, b, &r)) *ok = false;
           return r;
         });
       }},
      {"Sub",
       [](const Node& n, const Known& k) {
         return foldBinary(n, k, [](int64_t a, int64_t b, bool* ok) {
           int64_t r = 0;
           if (__builtin_sub_overflow(a, b, &r)) *ok = false;
           return r;
         });
       }},
      {"Mul",
       [](const Node& n, const Known& k) {
         return foldBinary(n, k, [](int64_t a, int64_t b, bool* ok) {
           int64_t r = 0;
           if (__builtin_mul_overflow(a, b, &r)) *ok = false;
           return r;
         });
       }},
      {"Transpose", foldTranspose},
      {"Range", foldRange},
      {"Mod",
       [](const Node& n, const Known& k) {
         // Integer Mod (10, 13): the sign of the divisor (Python's %), or of the dividend with
         // fmod=1 (C's fmod).
         const bool c_fmod = n.intAttr("fmod", 0) != 0;
         if (current_opset < 10) return std::optional<IntArray>();
         return foldBinary(n, k, c_fmod ? [](int64_t a, int64_t b, bool* ok) -> int64_t {
           if (b == 0) *ok = false;
           return b == 0 ? 0 : a % b;
         } : [](int64_t a, int64_t b, bool* ok) -> int64_t {
           if (b == 0) *ok = false;
           if (b == 0) return 0;
           const int64_t r = a % b;
           return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
         });
       }},
      {"Div",
       [](const Node& n, const Known& k) {
         // ONNX integer Div truncates toward zero, as C++ does.
         return foldBinary(n, k, [](int64_t a, int64_t b, bool* ok) {
           if (b == 0) *ok = false;
           return b == 0 ? 0 : a / b;
         });
       }},
  };
  return rules;
}

}  // namespace

namespace {

// Output type of Reshape(x, target) when the target holds symbols: [N, -1] of x [N, 64, 1, 1]
// is [N, 64], because the symbolic factors cancel. nullopt when it cannot be proven.
std::optional<ValueType> reshapeType(const Node& n, const IntArray& target,
                                     const Symbols& symbols) {
  const Value* x = n.input(0);
  if (!x || !x->type().shape || target.shape.size() != 1) return std::nullopt;
  const auto& in_dims = *x->type().shape;
  const bool allow_zero = n.intAttr("allowzero", 0) != 0;
  std::vector<Dim> out;
  int infer_at = -1;
  for (size_t i = 0; i < target.data.size(); ++i) {
    const int64_t t = target.data[i];
    if (t == 0 && !allow_zero) {
      if (i >= in_dims.size()) return std::nullopt;
      out.push_back(in_dims[i]);
    } else if (t == -1) {
      if (infer_at >= 0) return std::nullopt;
      infer_at = static_cast<int>(i);
      out.push_back(Dim{});
    } else if (isValue(t)) {
      if (t < 0) return std::nullopt;
      out.push_back(Dim::known(t));
    } else if (const std::string* name = symbols.name(t)) {
      out.push_back(Dim::symbol(*name));
    } else {
      return std::nullopt;
    }
  }
  if (infer_at >= 0) {
    // Known product and symbol multiset of the input, divided by those of the other outputs.
    int64_t num = 1, den = 1;
    std::vector<std::string> syms;
    for (const Dim& d : in_dims) {
      if (d.isKnown()) {
        if (__builtin_mul_overflow(num, d.value, &num)) return std::nullopt;  // huge dims (fuzz/)
      } else if (!d.param.empty()) {
        syms.push_back(d.param);
      } else {
        return std::nullopt;
      }
    }
    for (size_t i = 0; i < out.size(); ++i) {
      if (static_cast<int>(i) == infer_at) continue;
      const Dim& d = out[i];
      if (d.isKnown()) {
        if (__builtin_mul_overflow(den, d.value, &den)) return std::nullopt;
      } else {
        auto it = std::find(syms.begin(), syms.end(), d.param);
        if (d.param.empty() || it == syms.end()) return std::nullopt;
        syms.erase(it);
      }
    }
    if (!syms.empty() || den == 0 || num % den != 0) return std::nullopt;
    out[infer_at] = Dim::known(num / den);
  }
  ValueType type = n.output()->type();
  type.dtype = x->dtype();
  type.shape = std::move(out);
  return type;
}

bool moreSpecific(const ValueType& candidate, const ValueType& current) {
  if (!candidate.shape) return false;
  if (!current.shape) return true;
  if (current.shape->size() != candidate.shape->size()) return false;
  int gained = 0;
  for (size_t i = 0; i < current.shape->size(); ++i) {
    const Dim &c = (*current.shape)[i], &d = (*candidate.shape)[i];
    if (c.isKnown() && !(d == c)) return false;  // never contradict a known dim
    if (!c.isKnown() && (d.isKnown() || (c.param.empty() && !d.param.empty()))) ++gained;
  }
  return gained > 0;
}

}  // namespace

namespace {

// The element type of a folded output: Cast's `to`, ConstantOfShape's value, else the
// declared type (int64 when inference left it undefined).
DType foldedDType(const Node& n) {
  if (n.opType() == "Cast") return static_cast<DType>(n.intAttr("to", 7));
  if (n.opType() == "ConstantOfShape") return constantOfShapeValue(n)->dtype();
  if (n.opType() == "Equal") return DType::kBool;
  if (n.opType() == "Shape" || n.opType() == "Size") return DType::kInt64;
  DType declared = n.output()->dtype();
  // The other rules keep their data input's type (a bool Concat stays bool).
  const Value* data = n.input(n.opType() == "Where" ? 1 : 0);
  if (declared == DType::kUndefined && data) declared = data->dtype();
  return isFoldDType(declared) ? declared : DType::kInt64;
}

Tensor toTensor(const IntArray& value, DType dtype) {
  Tensor t(dtype, value.shape);
  for (size_t i = 0; i < value.data.size(); ++i) {
    if (dtype == DType::kInt64)
      t.mutableData<int64_t>()[i] = value.data[i];
    else if (dtype == DType::kInt32)
      t.mutableData<int32_t>()[i] = static_cast<int32_t>(value.data[i]);
    else
      t.mutableData<bool>()[i] = value.data[i] != 0;
  }
  return t;
}

}  // namespace

ShapeFoldResult foldShapeComputations(const Graph& graph, int64_t opset) {
  Known k;
  Symbols symbols;
  current_symbols = &symbols;
  current_opset = opset;
  ShapeFoldResult result;
  auto order = graph.topologicalOrder();
  if (!order.isOk()) {
    current_symbols = nullptr;
    return result;
  }
  auto seed = [&](const Value* v) {
    if (!v || k.count(v)) return;
    const Tensor* t = v->constantData();
    if (t && isFoldDType(t->dtype()) && t->numel() <= kMaxFoldedElements)
      k[v] = IntArray{t->shape(), t->toInt64Vector()};
  };
  for (const Node* n : order.value()) {
    for (const Value* in : n->inputs()) seed(in);
    if (!n->isDefaultDomain() || n->numOutputs() != 1 || !n->output()) continue;
    const Value* out = n->output();
    // Reshape of known integer data (Swin's pads: [-1, 2] pairs) folds; otherwise only its
    // output type may be refined below.
    std::optional<IntArray> reshaped =
        n->opType() == "Reshape" && known(*n, 0, k) ? foldReshapeData(*n, k) : std::nullopt;
    if (reshaped) {
      if (reshaped->fullyKnown()) result.values.emplace(out, toTensor(*reshaped, foldedDType(*n)));
      k[out] = std::move(*reshaped);
      continue;
    }
    if (n->opType() == "Reshape") {
      const IntArray* target = known(*n, 1, k);
      if (target) {
        auto type = reshapeType(*n, *target, symbols);
        if (type && moreSpecific(*type, out->type()))
          result.refined_types.emplace(out, std::move(*type));
      }
      continue;
    }
    auto rule = foldRules().find(n->opType());
    if (rule == foldRules().end()) continue;
    // Arithmetic only on integer data: a float Add is not a shape computation.
    if (n->opType() != "Shape" && n->opType() != "Size" && n->opType() != "Cast" &&
        out->dtype() != DType::kUndefined && !isFoldDType(out->dtype()))
      continue;
    std::optional<IntArray> value = rule->second(*n, k);
    if (!value || static_cast<int64_t>(value->data.size()) > kMaxFoldedElements) continue;
    if (shapeNumel(value->shape) != static_cast<int64_t>(value->data.size())) continue;
    const bool complete = value->fullyKnown();
    k[out] = *value;
    if (!complete) continue;  // partial values help later nodes but are not results
    result.values.emplace(out, toTensor(*value, foldedDType(*n)));
  }
  current_symbols = nullptr;
  return result;
}

}  // namespace nnc
