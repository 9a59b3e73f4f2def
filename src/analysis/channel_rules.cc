// One channel rule per op type. A rule only declares couplings; anything it cannot prove is
// frozen with a reason.

#include <algorithm>
#include <map>
#include <tuple>

#include "channel_coupling.h"
#include "nncompress/ir/weight_layout.h"

namespace nnc::analysis_internal {

// ------------------------------------------------------------------ builder

int CouplingBuilder::slot(const Value* v, int axis, int64_t size) {
  auto& axes = by_value_[v];
  if (axes.size() <= static_cast<size_t>(axis)) axes.resize(axis + 1, -1);
  if (axes[axis] >= 0) return axes[axis];
  const int id = static_cast<int>(slots_.size());
  slots_.push_back({v, axis, size});
  parent_.push_back(id);
  axes[axis] = id;
  return id;
}

std::optional<int> CouplingBuilder::activation(const Value* v, int64_t proven_size) {
  if (!v || !isFloatingPoint(v->dtype()) || v->constantData()) return std::nullopt;
  const auto& shape = v->type().shape;
  if (!shape || shape->size() < 2) return std::nullopt;
  const bool fresh = !by_value_.count(v) || by_value_[v].size() < 2 || by_value_[v][1] < 0;
  const int s = slot(v, 1, (*shape)[1].isKnown() ? (*shape)[1].value : proven_size);
  seen_.insert(v);
  if (fresh) {
    GroupMember m;
    m.value = v;
    m.axis = 1;
    m.role = MemberRole::kActivation;
    m.node = v->producer();
    members_.push_back({s, m});
    if (slots_[s].size < 0)
      freeze(s, "channel count of '" + v->name() + "' is not static", v->producer());
  }
  return s;
}

std::optional<int> CouplingBuilder::activationAxis(const Value* v, int axis) {
  if (!v || !isFloatingPoint(v->dtype()) || v->constantData()) return std::nullopt;
  const auto& shape = v->type().shape;
  if (!shape || shape->empty()) return std::nullopt;
  const int rank = static_cast<int>(shape->size());
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank) return std::nullopt;
  if (axis == 1) return activation(v);
  const bool fresh = !by_value_.count(v) || by_value_[v].size() <= static_cast<size_t>(axis) ||
                     by_value_[v][axis] < 0;
  const int s = slot(v, axis, (*shape)[axis].isKnown() ? (*shape)[axis].value : -1);
  seen_axes_.insert({v, axis});
  if (fresh) {
    GroupMember m;
    m.value = v;
    m.axis = axis;
    m.role = MemberRole::kActivation;
    m.node = v->producer();
    members_.push_back({s, m});
    if (slots_[s].size < 0)
      freeze(s, "axis " + std::to_string(axis) + " of '" + v->name() + "' is not static",
             v->producer());
  }
  return s;
}

std::vector<std::pair<int, std::pair<const Value*, int>>> CouplingBuilder::otherAxisSlots() const {
  std::vector<std::pair<int, std::pair<const Value*, int>>> out;
  for (const auto& [v, axes] : by_value_) {
    if (v->constantData()) continue;
    for (size_t a = 0; a < axes.size(); ++a)
      if (a != 1 && axes[a] >= 0) out.push_back({axes[a], {v, static_cast<int>(a)}});
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<int> CouplingBuilder::weight(const Node& node, size_t input, int axis,
                                           MemberRole role) {
  const Value* v = node.input(input);
  const Tensor* t = v ? v->constantData() : nullptr;
  if (!t || axis >= t->rank()) return std::nullopt;
  const int s = slot(v, axis, t->dim(axis));
  GroupMember m;
  m.value = v;
  m.axis = axis;
  m.role = role;
  m.node = &node;
  members_.push_back({s, m});
  if (role == MemberRole::kProducer) producers_.push_back({s, &node});
  return s;
}

int CouplingBuilder::virtualSlot(const Value* anchor, int64_t size) {
  const int id = static_cast<int>(slots_.size());
  slots_.push_back({anchor, -1, size});
  parent_.push_back(id);
  return id;
}

void CouplingBuilder::same(int a, int b) {
  a = find(a);
  b = find(b);
  if (a != b) parent_[std::max(a, b)] = std::min(a, b);
}

void CouplingBuilder::freeze(int slot, const std::string& why, const Node* node) {
  frozen_.emplace_back(slot, why, node);
}

void CouplingBuilder::resolveRequirements() {
  for (const Requirement& r : required_) {
    if (find(r.a) == find(r.b)) continue;
    freeze(r.a, r.why, r.node);
    freeze(r.b, r.why, r.node);
  }
}

void CouplingBuilder::mergeParallelEdges() {
  for (bool changed = true; changed;) {
    changed = false;
    // (to space, offset, repeat, tiles, tile stride, index map)
    std::map<std::tuple<int, int64_t, int64_t, int64_t, int64_t, const void*>, int> from;
    for (const Edge& e : edges_) {
      auto [it, inserted] = from.emplace(std::make_tuple(find(e.to_slot), e.offset, e.repeat,
                                                         e.tiles, e.tile_stride, e.table.get()),
                                         e.from_slot);
      if (inserted || find(it->second) == find(e.from_slot)) continue;
      same(it->second, e.from_slot);
      changed = true;
    }
  }
}

void CouplingBuilder::freezeNode(const Node& node, const std::string& why) {
  for (const Value* v : node.inputs())
    if (auto s = activation(v)) freeze(*s, why, &node);
  for (const Value* v : node.outputs())
    if (auto s = activation(v)) freeze(*s, why, &node);
}

int rankOf(const Value* v) {
  if (const Tensor* t = v ? v->constantData() : nullptr) return t->rank();
  return v && v->type().shape ? static_cast<int>(v->type().shape->size()) : -1;
}

std::string opLabel(const Node& n) {
  return n.opType() + (n.name().empty() ? "" : " '" + n.name() + "'");
}

bool isUsed(const Value* v) { return v && (!v->uses().empty() || v->isGraphOutput()); }

namespace {

std::optional<Shape> staticShapeOf(const Value* v) {
  if (!v) return std::nullopt;
  if (const Tensor* t = v->constantData()) return t->shape();
  return v->staticShape();
}

// ------------------------------------------------------------------ shape tensors

// Where one element of a 1-D int64 shape tensor comes from: a literal in a constant (which
// surgery can rewrite), or dimension `axis` of Shape(of).
struct ShapeSource {
  enum Kind { kUnknown, kLiteral, kFromShape } kind = kUnknown;
  int64_t literal = 0;
  ShapeLiteral where;  // kLiteral: the constant holding it
  const Value* of = nullptr;
  int64_t axis = 0;
};

// Cast and Identity keep every shape value: Cast to int32, int64, float or double (exact for
// any dimension a model has); a cast to a narrower or other type is not followed.
bool keepsShapeValues(const Node& n) {
  if (n.isOp("Identity")) return true;
  if (!n.isOp("Cast")) return false;
  const auto to = static_cast<DType>(n.intAttr("to", 0));
  return to == DType::kInt32 || to == DType::kInt64 || to == DType::kFloat32 ||
         to == DType::kFloat64;
}

// The Shape node `v` is computed by, looking through value-keeping Casts and Identities.
const Node* shapeProducer(const Value* v) {
  for (int depth = 0; v && v->producer() && depth < 16; ++depth) {
    const Node* p = v->producer();
    if (p->isOp("Shape")) return p;
    if (!keepsShapeValues(*p)) return nullptr;
    v = p->input(0);
  }
  return nullptr;
}

std::optional<int64_t> constantScalar(const Value* v) {
  const Tensor* t = v ? v->constantData() : nullptr;
  if (!t || t->numel() != 1) return std::nullopt;
  return t->toInt64Vector()[0];
}

// Follows element `element` of `reader`'s input `input` back through Concat, Unsqueeze,
// Squeeze, Cast, Identity, Gather and Slice of a Shape: the ops exporters build
// `x.view(x.size(0), -1)` targets from.
ShapeSource traceShapeElement(const Node& reader, int input, int64_t element, int depth = 0) {
  const Value* v = reader.input(input);
  if (!v || depth > 16 || element < 0) return {};
  if (const Tensor* t = v->constantData()) {
    if (t->rank() > 1 || element >= t->numel()) return {};
    if (t->dtype() != DType::kInt64 && t->dtype() != DType::kInt32) return {};
    ShapeSource s;
    s.kind = ShapeSource::kLiteral;
    s.literal = t->toInt64Vector()[element];
    s.where = {&reader, input, element, nullptr};
    return s;
  }
  const Node* p = v->producer();
  if (!p) return {};
  const std::string& op = p->opType();
  if (keepsShapeValues(*p)) return traceShapeElement(*p, 0, element, depth + 1);
  if (op == "Unsqueeze" || op == "Squeeze") {
    if (rankOf(p->input(0)) > 1 || rankOf(p->output(0)) > 1 || element != 0) return {};
    return traceShapeElement(*p, 0, 0, depth + 1);
  }
  if (op == "Concat") {
    for (size_t i = 0; i < p->numInputs(); ++i) {
      auto part = staticShapeOf(p->input(i));
      if (!part || part->size() != 1) return {};
      if (element < (*part)[0])
        return traceShapeElement(*p, static_cast<int>(i), element, depth + 1);
      element -= (*part)[0];
    }
    return {};
  }
  const Node* shape = shapeProducer(p->input(0));
  auto fromShape = [&](int64_t index) -> ShapeSource {
    if (!shape) return {};
    const int rank = rankOf(shape->input(0));
    if (rank < 0) return {};
    // Shape-15 `start`/`end`: negative counts from the back; both are clamped to [0, rank].
    auto clampAxis = [rank](int64_t a) {
      return std::clamp<int64_t>(a < 0 ? a + rank : a, 0, rank);
    };
    const int64_t start = clampAxis(shape->intAttr("start", 0));
    const int64_t end = clampAxis(shape->intAttr("end", rank));
    if (index < 0) index += end - start;  // a negative index counts from the back of the output
    if (index < 0 || start + index >= end) return {};
    ShapeSource s;
    s.kind = ShapeSource::kFromShape;
    s.of = shape->input(0);
    s.axis = start + index;
    return s;
  };
  if (op == "Gather") {
    const Tensor* idx = p->input(1) ? p->input(1)->constantData() : nullptr;
    if (!idx || p->intAttr("axis", 0) != 0 || element >= idx->numel()) return {};
    return fromShape(idx->toInt64Vector()[element]);
  }
  if (op == "Slice" && p->numInputs() >= 3) {
    auto start = constantScalar(p->input(1));
    const auto axes = p->input(3) ? constantScalar(p->input(3)) : std::optional<int64_t>(0);
    const auto step = p->input(4) ? constantScalar(p->input(4)) : std::optional<int64_t>(1);
    if (!start || *start < 0 || axes != 0 || step != 1) return {};
    return fromShape(*start + element);
  }
  if (op == "Shape") {
    shape = p;
    return fromShape(element);
  }
  return {};
}

// Where an element of a Shape output ends up: element `position` of input `input` of `node`.
struct ShapeEntryUse {
  const Node* node = nullptr;
  int input = 0;
  int64_t position = 0;
};

int64_t lengthOf(const Value* v) {
  auto s = staticShapeOf(v);
  if (!s || s->size() > 1) return -1;
  return s->empty() ? 1 : (*s)[0];
}

// The [start, end) a 1-D Slice takes, normalised to a tensor of length `len`; nullopt unless
// the bounds are constant, on axis 0, with step 1 (inputs from opset 10, attributes before).
std::optional<std::pair<int64_t, int64_t>> sliceRange(const Node& n, int64_t len) {
  std::optional<int64_t> start, end, axis = 0, step = 1;
  if (n.numInputs() >= 3) {
    start = constantScalar(n.input(1));
    end = constantScalar(n.input(2));
    if (n.input(3)) axis = constantScalar(n.input(3));
    if (n.input(4)) step = constantScalar(n.input(4));
  } else if (n.intsAttr("starts").size() == 1 && n.intsAttr("ends").size() == 1) {
    start = n.intsAttr("starts")[0];
    end = n.intsAttr("ends")[0];
    if (!n.intsAttr("axes").empty()) axis = n.intsAttr("axes")[0];
  }
  if (!start || !end || step != 1 || !(axis == 0 || axis == -1) || len < 0) return std::nullopt;
  auto norm = [&](int64_t i) { return std::clamp<int64_t>(i < 0 ? i + len : i, 0, len); };
  return std::make_pair(norm(*start), norm(*end));
}

// Where positions `at` of a 1-D shape tensor land in the output of the op that reads it at
// `input`: empty when the op drops them, nullopt when the op is not a value-keeping shape op.
using ShapeForward = std::function<std::optional<std::vector<int64_t>>(
    const Node&, int input, const std::vector<int64_t>& at)>;

const std::unordered_map<std::string, ShapeForward>& shapeForwards() {
  using Out = std::optional<std::vector<int64_t>>;
  static const std::unordered_map<std::string, ShapeForward> table = [] {
    std::unordered_map<std::string, ShapeForward> t;
    auto keep = [](const Node& n, int input, const std::vector<int64_t>& at) -> Out {
      if (input != 0 || !keepsShapeValues(n)) return std::nullopt;
      return at;
    };
    t["Cast"] = keep;
    t["Identity"] = keep;
    t["Gather"] = [](const Node& n, int input, const std::vector<int64_t>& at) -> Out {
      const Tensor* idx = n.input(1) ? n.input(1)->constantData() : nullptr;
      const int64_t len = lengthOf(n.input(0));
      if (input != 0 || !idx || n.intAttr("axis", 0) != 0 || len < 0) return std::nullopt;
      std::vector<int64_t> out;
      const auto indices = idx->toInt64Vector();
      for (size_t i = 0; i < indices.size(); ++i)
        if (std::count(at.begin(), at.end(), indices[i] < 0 ? indices[i] + len : indices[i]))
          out.push_back(static_cast<int64_t>(i));
      return out;
    };
    t["Slice"] = [](const Node& n, int input, const std::vector<int64_t>& at) -> Out {
      auto range = sliceRange(n, lengthOf(n.input(0)));
      if (input != 0 || !range) return std::nullopt;
      std::vector<int64_t> out;
      for (int64_t p : at)
        if (range->first <= p && p < range->second) out.push_back(p - range->first);
      return out;
    };
    auto oneElement = [](const Node& n, int input, const std::vector<int64_t>& at) -> Out {
      if (input != 0 || lengthOf(n.input(0)) != 1 || lengthOf(n.output(0)) != 1)
        return std::nullopt;
      return at;
    };
    t["Unsqueeze"] = oneElement;
    t["Squeeze"] = oneElement;
    t["Concat"] = [](const Node& n, int input, const std::vector<int64_t>& at) -> Out {
      const int64_t axis = n.intAttr("axis", 0);
      if (axis != 0 && axis != -1) return std::nullopt;
      int64_t offset = 0;
      for (int i = 0; i < input; ++i) {
        const int64_t len = lengthOf(n.input(i));
        if (len < 0) return std::nullopt;
        offset += len;
      }
      std::vector<int64_t> out;
      for (int64_t p : at) out.push_back(p + offset);
      return out;
    };
    return t;
  }();
  return table;
}

// Follows positions `at` of `v` through value-keeping shape ops (Cast, Identity, Gather, Slice,
// Concat, Unsqueeze, Squeeze) to the ops that use them otherwise. False when they reach a graph
// output or the walk gives up.
bool shapeEntryUses(const Value* v, const std::vector<int64_t>& at,
                    std::vector<ShapeEntryUse>& sinks, int depth = 0) {
  if (at.empty()) return true;
  if (depth > 16 || v->isGraphOutput()) return false;
  for (const Use& u : v->uses()) {
    const Node& n = *u.node;
    auto fwd = n.isDefaultDomain() ? shapeForwards().find(n.opType()) : shapeForwards().end();
    if (fwd == shapeForwards().end()) {
      for (int64_t p : at) sinks.push_back({&n, u.input_index, p});
      continue;
    }
    auto next = fwd->second(n, u.input_index, at);
    if (!next || !shapeEntryUses(n.output(0), *next, sinks, depth + 1)) return false;
  }
  return true;
}

// ------------------------------------------------------------------ table-driven weights

int resolvedAxis(const Node& n, int axis, const char* swap_if) {
  return swap_if && n.intAttr(swap_if, 0) != 0 ? 1 - axis : axis;
}

// Couples every non-broadcasting entry of the op's table: weight slot with the channel slot of
// input 0 or output 0. False when one of them is not a constant.
bool coupleTable(const Node& n, CouplingBuilder& b, int x, int y, bool skip_consumer = false) {
  for (const ChannelInput& e : channelRules().at(n.opType()).inputs) {
    if (e.broadcasts || (skip_consumer && e.role == MemberRole::kConsumer)) continue;
    if (!n.input(e.input)) {
      if (e.role == MemberRole::kParameter) continue;  // optional bias
      return false;
    }
    auto w = b.weight(n, e.input, resolvedAxis(n, e.axis, e.swap_if), e.role);
    if (!w) return false;
    b.same(e.of_output ? y : x, *w);
  }
  return true;
}

// ------------------------------------------------------------------ rules

// Axis a of x and axis a of y (every axis but 1, which the rules couple through activation())
// carry the same indices, for tensors of one rank. Axes in `except` are left to the caller.
void sameOtherAxes(const Value* x, const Value* y, CouplingBuilder& b,
                   const std::vector<int>& except = {}) {
  const int rank = rankOf(x);
  if (rank < 0 || rank != rankOf(y)) return;
  for (int a = 0; a < rank; ++a) {
    if (a == 1 || std::count(except.begin(), except.end(), a)) continue;
    auto sx = b.activationAxis(x, a), sy = b.activationAxis(y, a);
    if (sx && sy) b.same(*sx, *sy);
  }
}

// Ops that keep the channel axis and never mix channels: X[:, c] only affects Y[:, c].
// Element-wise ops (`elementwise`) keep every other axis too; pools and Pad only axis 1.
void passThrough(const Node& n, CouplingBuilder& b, bool elementwise = true) {
  auto out = b.activation(n.output(0));
  auto in = b.activation(n.input(0));
  if (!in || !out) {
    if (in || out) b.freezeNode(n, opLabel(n) + " changes the channel layout");
    return;
  }
  b.same(*in, *out);
  if (elementwise) sameOtherAxes(n.input(0), n.output(0), b);
  // Dropout's mask (a float tensor before opset 10) has the input's shape.
  for (size_t i = 1; i < n.numOutputs(); ++i)
    if (auto extra = b.activation(n.output(i))) {
      b.same(*in, *extra);
      if (elementwise) sameOtherAxes(n.input(0), n.output(i), b);
    }
}

// Clip: bounds are attributes before opset 11 and scalar inputs after.
void clipRule(const Node& n, CouplingBuilder& b) {
  for (size_t i = 1; i < n.numInputs(); ++i) {
    const Value* bound = n.input(i);
    if (bound && rankOf(bound) != 0 &&
        !(staticShapeOf(bound) && shapeNumel(*staticShapeOf(bound)) == 1))
      return b.freezeNode(n, opLabel(n) + " bound is not a scalar");
  }
  passThrough(n, b);
}

// Pools: per channel over space. MaxPool's Indices output (opset 8+) flattens the channel
// index into its values.
void poolRule(const Node& n, CouplingBuilder& b) {
  if (isUsed(n.output(1)))
    return b.freezeNode(n, opLabel(n) + " Indices output encodes the channel count");
  passThrough(n, b, /*elementwise=*/false);
}

// Grouped Conv (every version): W [M, C/group, k...]; input channel g * (C/group) + j reads
// W[:, j] for the outputs of group g only, output channel g * (M/group) + k is W row
// g * (M/group) + k. A weight column is shared by all groups, so an input channel can only go
// with the same local index in every group: the input is `group` tiles of the local space
// W axis 1. The outputs are tiled the same way (a virtual local space of M/group channels), so
// that every group keeps as many: `group` stays valid and unchanged.
void groupedConvRule(const Node& n, CouplingBuilder& b, int x, int y, int64_t group) {
  const Tensor* w = n.input(1)->constantData();
  const int64_t c_in = b.sizeOf(x), c_out = w->dim(0);
  if (group <= 0 || c_in % group != 0 || c_out % group != 0 || w->dim(1) * group != c_in)
    return b.freezeNode(
        n, opLabel(n) + " group=" + std::to_string(group) + " does not divide its channels");
  if (!coupleTable(n, b, x, y, /*skip_consumer=*/true))
    return b.freezeNode(n, opLabel(n) + " bias is not constant");
  const int local_in = *b.weight(n, 1, 1, MemberRole::kConsumer);
  b.tile(local_in, x, group, c_in / group);
  const int local_out = b.virtualSlot(n.output(0), c_out / group);
  b.tile(local_out, y, group, c_out / group);
}

void convRule(const Node& n, CouplingBuilder& b) {
  auto x = b.activation(n.input(0));
  auto y = b.activation(n.output(0));
  const Tensor* w = n.input(1) ? n.input(1)->constantData() : nullptr;
  if (!x || !y) return b.freezeNode(n, opLabel(n) + " has tensors without a static channel count");
  if (!w || w->rank() < 3) return b.freezeNode(n, opLabel(n) + " weight is not a constant tensor");
  if (n.input(2) && !n.input(2)->constantData())
    return b.freezeNode(n, opLabel(n) + " bias is not constant");
  const int64_t group = n.intAttr("group", 1);
  const int64_t c_in = b.sizeOf(*x);
  const int64_t c_out = w->dim(0);
  if (group == 1) {
    coupleTable(n, b, *x, *y);
    return;
  }
  if (group == c_in && w->dim(1) == 1 && c_out == c_in) {
    // Depthwise: input channel c makes output channel c; one channel space, `group` follows it.
    b.same(*x, *y);
    coupleTable(n, b, *x, *y, /*skip_consumer=*/true);
    b.groupAttr(*y, n);
    b.passesThrough(n);
    return;
  }
  groupedConvRule(n, b, *x, *y, group);
}
void convTransposeRule(const Node& n, CouplingBuilder& b) {
  auto x = b.activation(n.input(0));
  auto y = b.activation(n.output(0));
  const Tensor* w = n.input(1) ? n.input(1)->constantData() : nullptr;
  if (!x || !y) return b.freezeNode(n, opLabel(n) + " has tensors without a static channel count");
  if (!w || w->rank() < 3) return b.freezeNode(n, opLabel(n) + " weight is not a constant tensor");
  if (n.intAttr("group", 1) != 1)
    return groupedConvTransposeRule(n, b, *x, *y, n.intAttr("group", 1));
  if (!coupleTable(n, b, *x, *y)) b.freezeNode(n, opLabel(n) + " bias is not constant");
}

void gemmRule(const Node& n, CouplingBuilder& b) {
  auto a = b.activation(n.input(0));
  auto y = b.activation(n.output(0));
  const Tensor* w = n.input(1) ? n.input(1)->constantData() : nullptr;
  if (!a || !y) return b.freezeNode(n, opLabel(n) + " has tensors without a static feature count");
  if (!w || w->rank() != 2)
    return b.freezeNode(n, opLabel(n) + " weight B is not a constant matrix");
  if (n.intAttr("transA", 0)) return b.freezeNode(n, opLabel(n) + " uses transA=1");
  coupleTable(n, b, *a, *y);
  // C broadcasts (unidirectionally from opset 7; with `broadcast=1` before): a per-output
  // vector [N] or [1, N] is a parameter, a scalar is fine, anything else is not handled.
  if (const Value* c = n.input(2)) {
    auto cs = staticShapeOf(c);
    const int64_t n_out = weightLayout(n)->outputChannels(w->shape());
    if (c->constantData() && cs && !cs->empty() && cs->back() == n_out &&
        shapeNumel(*cs) == n_out) {
      b.same(*y, *b.weight(n, 2, static_cast<int>(cs->size()) - 1, MemberRole::kParameter));
    } else if (!(cs && shapeNumel(*cs) == 1)) {
      b.freezeNode(n, opLabel(n) + " bias C is not a per-output vector");
    }
  }
}

// MatMul (1, 9, 13) of an activation x [..., K] (rank >= 2) and a constant W [K, N]: y [..., N];
// the leading axes are batch axes, y[..., n] reads x[..., k] of the same position only.
void matmulRule(const Node& n, CouplingBuilder& b) {
  const Tensor* w = n.input(1) ? n.input(1)->constantData() : nullptr;
  if (!w && n.input(1) && !n.input(0)->constantData()) return activationMatmulRule(n, b);
  const int rank = rankOf(n.input(0));
  if (!w || w->rank() != 2 || rank < 2 || rankOf(n.output(0)) != rank)
    return b.freezeNode(n, opLabel(n) + " is not an activation times a constant matrix");
  auto a = b.activationAxis(n.input(0), -1);
  auto y = b.activationAxis(n.output(0), -1);
  if (!a || !y || !b.activation(n.input(0)) || !b.activation(n.output(0)))
    return b.freezeNode(n, opLabel(n) + " has tensors without a static feature count");
  coupleTable(n, b, *a, *y);
  std::vector<int> batch;
  for (int d = 0; d < rank - 1; ++d) {
    if (d == 1) b.same(*b.activation(n.input(0)), *b.activation(n.output(0)));
    batch.push_back(d);
  }
  sameOtherAxes(n.input(0), n.output(0), b, {rank - 1});
}

// BatchNormalization: scale, B, mean, var per channel. Before opset 9 `spatial=0` makes them
// per element; before 7 `is_test=0` and from 14 `training_mode=1` use batch statistics; the
// training outputs (running/saved mean and variance) are not followed.
void batchNormRule(const Node& n, CouplingBuilder& b) {
  auto x = b.activation(n.input(0));
  auto y = b.activation(n.output(0));
  if (!x || !y) return b.freezeNode(n, opLabel(n) + " has tensors without a static channel count");
  if (b.opset() < 9 && n.intAttr("spatial", 1) == 0)
    return b.freezeNode(n, opLabel(n) + " has spatial=0 (per-element parameters)");
  if ((b.opset() < 7 && n.intAttr("is_test", 0) == 0) ||
      (b.opset() >= 14 && n.intAttr("training_mode", 0) != 0))
    return b.freezeNode(n, opLabel(n) + " is in training mode");
  for (size_t i = 1; i < n.numOutputs(); ++i)
    if (isUsed(n.output(i))) return b.freezeNode(n, opLabel(n) + " training outputs are used");
  b.same(*x, *y);
  if (!coupleTable(n, b, *x, *y)) b.freezeNode(n, opLabel(n) + " parameters are not constant");
}

// InstanceNormalization: per channel over space; scale and B are per-channel parameters.
void instanceNormRule(const Node& n, CouplingBuilder& b) {
  auto x = b.activation(n.input(0));
  auto y = b.activation(n.output(0));
  if (!x || !y) return b.freezeNode(n, opLabel(n) + " has tensors without a static channel count");
  b.same(*x, *y);
  if (!coupleTable(n, b, *x, *y)) b.freezeNode(n, opLabel(n) + " parameters are not constant");
}

// PRelu: the slope broadcasts unidirectionally against X from opset 7; before, only a single
// shared slope is proven.
void preluRule(const Node& n, CouplingBuilder& b) {
  auto x = b.activation(n.input(0));
  auto y = b.activation(n.output(0));
  if (!x || !y) return b.freezeNode(n, opLabel(n) + " has tensors without a static channel count");
  b.same(*x, *y);
  const Tensor* slope = n.input(1) ? n.input(1)->constantData() : nullptr;
  if (!slope) return b.freezeNode(n, opLabel(n) + " slope is not constant");
  if (slope->numel() == 1) return;
  if (b.opset() < 7)
    return b.freezeNode(n, opLabel(n) + " has a non-scalar slope before opset 7 (legacy layout)");
  const int channel_axis = slope->rank() - (rankOf(n.input(0)) - 1);
  if (channel_axis < 0) return;  // the slope varies only along spatial axes
  if (slope->dim(channel_axis) == 1) {
    if (shapeNumel(slope->shape()) == 1) return;
  } else if (slope->dim(channel_axis) == b.sizeOf(*x)) {
    b.same(*y, *b.weight(n, 1, channel_axis, MemberRole::kParameter));
    return;
  }
  b.freezeNode(
      n, opLabel(n) + " slope shape " + shapeToString(slope->shape()) + " is not per-channel");
}

// Couples axis `axis` of Add/Mul/...'s output (slot ys) with each operand's aligned axis: an
// operand of size 1 there broadcasts, a constant is a per-index parameter, an activation carries
// the same indices. False when it froze the node.
bool broadcastAxis(const Node& n, CouplingBuilder& b, int axis, int ys) {
  const int out_rank = rankOf(n.output(0));
  for (size_t i = 0; i < n.numInputs(); ++i) {
    const Value* v = n.input(i);
    if (!v) continue;
    const int r = rankOf(v);
    auto shape = staticShapeOf(v);
    const int at = r - (out_rank - axis);  // where the output's axis lands in v
    if (!shape && !v->type().shape) {
      b.freezeNode(n, opLabel(n) + " operand rank unknown");
      return false;
    }
    if (at < 0) continue;  // broadcasts along this axis entirely
    const Dim d = v->constantData() ? Dim::known((*shape)[at]) : (*v->type().shape)[at];
    if (d.isKnown() && d.value == 1) continue;
    if (v->constantData()) {
      b.same(ys, *b.weight(n, i, at, MemberRole::kParameter));
      continue;
    }
    auto s = b.activationAxis(v, at);
    if (!s) {
      b.freezeNode(n, opLabel(n) + " operand has no static channel axis");
      return false;
    }
    b.same(ys, *s);
  }
  return true;
}

// Add, Mul, ... : each operand either carries the output's channels, broadcasts along them
// (size 1), or is a constant per-channel parameter. Before opset 7 Add/Sub/Mul/Div/Pow had a
// `broadcast`/`axis` form that aligns B at `axis`: not proven here.
void broadcastRule(const Node& n, CouplingBuilder& b) {
  if (b.opset() < 7 && n.intAttr("broadcast", 0) != 0)
    return b.freezeNode(n, opLabel(n) + " uses the legacy broadcast attribute (opset < 7)");
  auto y = b.activation(n.output(0));
  if (!y) {
    for (const Value* v : n.inputs())
      if (b.activation(v))
        return b.freezeNode(n, opLabel(n) + " output has no static channel axis");
    return;
  }
  const int out_rank = rankOf(n.output(0));
  for (int axis = 0; axis < out_rank; ++axis) {
    auto ys = axis == 1 ? y : b.activationAxis(n.output(0), axis);
    if (!ys) return b.freezeNode(n, opLabel(n) + " output has no static channel axis");
    if (!broadcastAxis(n, b, axis, *ys)) return;
  }
}

// Concat: `axis` defaults to 1 in opset 1 and is required from 4.
void concatRule(const Node& n, CouplingBuilder& b) {
  auto y = b.activation(n.output(0));
  if (!y) {  // shape arithmetic, unless a feature map goes in (the output's rank is unknown)
    for (const Value* v : n.inputs())
      if (b.activation(v))
        return b.freezeNode(n, opLabel(n) + " output has no static channel axis");
    return;
  }
  const int rank = rankOf(n.output(0));
  int64_t axis = n.intAttr("axis", 1);
  if (axis < 0) axis += rank;
  for (const Value* v : n.inputs()) {
    if (!b.activation(v)) return b.freezeNode(n, opLabel(n) + " input has no static channel axis");
    if (rankOf(v) != rank) return b.freezeNode(n, opLabel(n) + " input ranks differ");
  }
  // Every axis: the concatenated one gives each input its offset, the others keep indices.
  for (int a = 0; a < rank; ++a) {
    auto ya = a == 1 ? y : b.activationAxis(n.output(0), a);
    int64_t off = 0;
    for (const Value* v : n.inputs()) {
      auto s = b.activationAxis(v, a);
      if (!s || !ya)
        return b.freezeNode(n, opLabel(n) + " input has no static axis " + std::to_string(a));
      if (a != axis) {
        b.same(*s, *ya);
        continue;
      }
      if (b.sizeOf(*s) < 0) {  // offsets unknown: this axis carries no group
        b.freeze(*ya, opLabel(n) + " input size along axis " + std::to_string(a) + " is not static",
                 &n);
        continue;
      }
      b.offset(*s, *ya, off);
      off += b.sizeOf(*s);
    }
  }
}

// Flatten: `axis` defaults to 1 in every version (negative from 11).
void flattenRule(const Node& n, CouplingBuilder& b) {
  auto x = b.activation(n.input(0));
  auto y = b.activation(n.output(0));
  if (!x || !y) return b.freezeNode(n, opLabel(n) + " has tensors without a static channel count");
  const int rank = rankOf(n.input(0));
  int64_t axis = n.intAttr("axis", 1);
  if (axis < 0) axis += rank;
  if (axis != 1) return b.freezeNode(n, opLabel(n) + " flattens at axis " + std::to_string(axis));
  int64_t spatial = 1;
  for (int d = 2; d < rank; ++d) {
    const Dim dim = (*n.input(0)->type().shape)[d];
    if (!dim.isKnown()) return b.freezeNode(n, opLabel(n) + " input spatial size is not static");
    spatial *= dim.value;
  }
  if (spatial == 1)
    b.same(*x, *y);
  else
    b.repeat(*x, *y, spatial);
}

int64_t knownProduct(const std::vector<Dim>& dims, size_t from) {
  int64_t p = 1;
  for (size_t d = from; d < dims.size(); ++d) {
    if (!dims[d].isKnown()) return -1;
    p *= dims[d].value;
  }
  return p;
}

// Reshape [N, C, H, W] -> [N, C*H*W] (or [N, C] when H*W == 1), or a reshape of the spatial
// axes only (any rank >= 2). The target's batch entry must provably keep N, and its channel entry
// must follow the pruned count: -1, 0 (copy, without allowzero) or a literal we rewrite (also one
// inside a Concat with Shape-derived parts). Opset < 5 has the target as an attribute: not handled.
// Reshape that regroups only the leading axes and keeps the last one, [T*B, C] <-> [T, B, C]
// (attention's out-projection as exported): element (i, c) keeps its flat index i * C + c, so
// y[..., c] is x[..., c]. The target must spell the last entry as the literal C (rewritten by
// surgery) with positive literals or one -1 before it, or as -1 after positive literals only.
// Axis 1, when it is not the last, is regrouped and frozen. False when this does not apply.
bool keepsLastAxis(const Node& n, CouplingBuilder& b, const std::vector<Dim>& xs,
                   const std::vector<Dim>& ys) {
  const size_t xr = xs.size(), yr = ys.size();
  if (xr < 2 || !xs.back().isKnown() || !ys.back().isKnown() || xs.back() != ys.back())
    return false;
  const int64_t lead = knownProduct(std::vector<Dim>(xs.begin(), xs.end() - 1), 0);
  if (lead < 0 || lead != knownProduct(std::vector<Dim>(ys.begin(), ys.end() - 1), 0)) return false;
  const ShapeSource last = traceShapeElement(n, 1, static_cast<int64_t>(yr) - 1);
  if (last.kind != ShapeSource::kLiteral ||
      !(last.literal == xs.back().value || last.literal == -1))
    return false;
  int minus_ones = last.literal == -1;
  for (size_t i = 0; i + 1 < yr; ++i) {
    const ShapeSource e = traceShapeElement(n, 1, static_cast<int64_t>(i));
    if (e.kind != ShapeSource::kLiteral || e.literal == 0 || e.literal < -1) return false;
    minus_ones += e.literal == -1;
  }
  if (minus_ones > 1) return false;
  auto sx = b.activationAxis(n.input(0), -1), sy = b.activationAxis(n.output(0), -1);
  if (!sx || !sy) return false;
  b.same(*sx, *sy);
  if (last.literal > 0) {
    ShapeLiteral lit = last.where;
    lit.spells = n.output(0);
    b.shapeLiteral(*sy, lit);
  }
  for (const Value* v : {n.input(0), n.output(0)})
    if (rankOf(v) > 2)
      if (auto s = b.activation(v))
        b.freeze(*s, opLabel(n) + " regroups axis 1 of '" + v->name() + "'", &n);
  return true;
}

void reshapeRule(const Node& n, CouplingBuilder& b) {
  if (channelShuffleRule(n, b) || headReshapeRule(n, b)) return;
  auto x = b.activation(n.input(0));
  auto y = b.activation(n.output(0));
  if (!x && !y) return;
  if (!x || !y) return b.freezeNode(n, opLabel(n) + " changes the channel layout");
  if (b.opset() < 5) return b.freezeNode(n, opLabel(n) + " has its target as an attribute");
  const auto& xs = n.input(0)->type().shape;
  const auto& ys = n.output(0)->type().shape;
  if (!xs || !ys || ys->size() < 2) return b.freezeNode(n, opLabel(n) + " shapes are not known");
  const bool keeps_axis_1 = (*xs)[1].isKnown() && (*ys)[1].isKnown() && (*xs)[1] == (*ys)[1];
  if (!keeps_axis_1 && keepsLastAxis(n, b, *xs, *ys)) return;
  const int64_t spatial = knownProduct(*xs, 2);
  if (spatial < 0) return b.freezeNode(n, opLabel(n) + " input spatial size is not static");
  const int64_t c = b.sizeOf(*x);
  const bool allow_zero = n.intAttr("allowzero", 0) != 0;
  const ShapeSource batch = traceShapeElement(n, 1, 0);
  const ShapeSource feat = traceShapeElement(n, 1, 1);
  auto copies = [&](const ShapeSource& s, int64_t axis) {
    return (s.kind == ShapeSource::kLiteral && s.literal == 0 && !allow_zero) ||
           (s.kind == ShapeSource::kFromShape && s.of == n.input(0) && s.axis == axis);
  };
  const bool batch_kept = (*xs)[0] == (*ys)[0] || copies(batch, 0) ||
                          (batch.kind == ShapeSource::kLiteral && batch.literal == -1 &&
                           knownProduct(*ys, 1) == c * spatial);
  if (!batch_kept)
    return b.freezeNode(n, opLabel(n) + " target does not provably keep the batch axis");
  const bool flatten = ys->size() == 2 && (*ys)[1].isKnown() && (*ys)[1].value == c * spatial;
  // Keeps batch and channels and regroups the spatial block ([N, C, H, W] -> [N, C, H*W]): for
  // each (n, c) the block is contiguous in both.
  const bool spatial_only =
      (*ys)[1].isKnown() && (*ys)[1].value == c && knownProduct(*ys, 2) == spatial;
  if (!flatten && !spatial_only)
    return b.freezeNode(n, opLabel(n) + " reshape " + n.input(0)->type().toString() + " -> " +
                               n.output(0)->type().toString() + " mixes channels");
  const bool follows = (feat.kind == ShapeSource::kLiteral && feat.literal == -1) ||
                       ((spatial_only || spatial == 1) && copies(feat, 1));
  if (feat.kind == ShapeSource::kLiteral && feat.literal > 0) {
    ShapeLiteral lit = feat.where;
    lit.spells = n.output(0);
    b.shapeLiteral(*y, lit);
  } else if (!follows) {
    return b.freezeNode(n,
                        opLabel(n) + " target's channel entry is computed in a way not followed");
  }
  if (spatial_only || spatial == 1)
    b.same(*x, *y);
  else
    b.repeat(*x, *y, spatial);
}

// Transpose (1, 13): y axis i is x axis perm[i]; perm defaults to reversing the axes. Each
// axis keeps its indices, so a group follows its axis wherever it moves.
void transposeRule(const Node& n, CouplingBuilder& b) {
  const int rank = rankOf(n.input(0));
  if (rank < 0 || rankOf(n.output(0)) != rank)
    return b.freezeNode(n, opLabel(n) + " has tensors without a static rank");
  std::vector<int64_t> perm = n.intsAttr("perm");
  if (perm.empty())
    for (int i = rank - 1; i >= 0; --i) perm.push_back(i);
  std::vector<int64_t> sorted = perm;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < static_cast<int>(sorted.size()); ++i)
    if (sorted[i] != i || static_cast<int>(perm.size()) != rank)
      return b.freezeNode(n, opLabel(n) + " perm is not a permutation of the axes");
  for (int i = 0; i < rank; ++i) {
    auto sy = b.activationAxis(n.output(0), i);
    auto sx = b.activationAxis(n.input(0), static_cast<int>(perm[i]));
    if (!sx || !sy) return b.freezeNode(n, opLabel(n) + " has tensors without a static axis");
    b.same(*sx, *sy);
  }
}

// LayerNorm's mean and variance as exported (ReduceMean over one axis, keepdims, then only
// broadcast back by Sub or Add): after pruning they average over the kept channels, which only
// approximates the original output.
bool isNormalisationStatistic(const Node& n, bool keepdims, size_t num_axes) {
  if (!n.isOp("ReduceMean") || !keepdims || num_axes != 1 || n.output(0)->isGraphOutput())
    return false;
  for (const Use& u : n.output(0)->uses())
    if (!u.node->isDefaultDomain() || !(u.node->isOp("Sub") || u.node->isOp("Add"))) return false;
  return !n.output(0)->uses().empty();
}

// The other axes of a Squeeze/Unsqueeze/Reduce*: those not in `axes` keep their indices, in
// order; an axis reduced over mixes its indices (a normalisation over the channels of a
// channels-last tensor: LayerNorm's ReduceMean) and is frozen.
void keptAxes(const Node& n, CouplingBuilder& b, std::vector<int64_t> axes, bool reduce) {
  const bool unsqueeze = n.isOp("Unsqueeze");
  const bool keepdims = reduce && n.intAttr("keepdims", 1) != 0;
  const int in_rank = rankOf(n.input(0)), out_rank = rankOf(n.output(0));
  const int listed_rank = unsqueeze ? out_rank : in_rank;
  for (int64_t& a : axes)
    if (a < 0) a += listed_rank;
  auto listed = [&](int a) { return std::count(axes.begin(), axes.end(), a) > 0; };
  if (reduce)
    for (int64_t a : axes) {
      auto s = b.activationAxis(n.input(0), static_cast<int>(a));
      if (!s) continue;
      const std::string what =
          opLabel(n) + " reduces over " +
          (a == 1 ? std::string("the channel axis") : "axis " + std::to_string(a)) + " of '" +
          n.input(0)->name() + "'";
      // Axis 1 stays frozen: over it, the statistic is a channels-first normalisation.
      if (a != 1 && isNormalisationStatistic(n, keepdims, axes.size()))
        b.approximate(*s, what + " (a normalisation: its statistics cover fewer channels)", &n);
      else
        b.freeze(*s, what, &n);
    }
  std::vector<std::pair<int, int>> kept;  // (input axis, output axis)
  if (unsqueeze) {
    for (int o = 0, i = 0; o < out_rank; ++o)
      if (!listed(o)) kept.push_back({i++, o});
  } else {
    for (int a = 0, o = 0; a < in_rank; ++a) {
      if (!listed(a))
        kept.push_back({a, o++});
      else if (keepdims)
        ++o;
    }
  }
  for (const auto& [in, out] : kept) {
    auto sx = b.activationAxis(n.input(0), in);
    auto sy = b.activationAxis(n.output(0), out);
    if (sx && sy) b.same(*sx, *sy);
  }
}

// Axis 1 of the side that lists it is a reduced axis or a unit axis, not channels that carry
// on: frozen, so nothing is pruned along it (keptAxes freezes a reduced input axis itself).
void unitAxisOne(const Node& n, CouplingBuilder& b, bool reduce) {
  const std::string what = opLabel(n) + " lists axis 1";
  if (n.isOp("Unsqueeze")) {
    if (auto s = b.activationAxis(n.output(0), 1)) b.freeze(*s, what + " (a new unit axis)", &n);
  } else if (!reduce) {
    if (auto s = b.activationAxis(n.input(0), 1)) b.freeze(*s, what + " (a unit axis)", &n);
  } else if (n.intAttr("keepdims", 1) != 0) {
    if (auto s = b.activationAxis(n.output(0), 1))
      b.freeze(*s, what + " (kept as a unit axis)", &n);
  }
}

// Squeeze/Unsqueeze/Reduce*: fine while the batch axis stays where it is. `axes` is an input
// from opset `axes_input_from` (13 for Squeeze, Unsqueeze, ReduceSum; 18 for the other Reduce*).
// Axis 1 may be listed: a token model [N, T, C] pools over T, and a Squeeze or Unsqueeze of a
// unit axis 1 moves the channels; keptAxes carries them to their new axis.
void axesRule(const Node& n, CouplingBuilder& b, int64_t axes_input_from, bool reduce) {
  auto x = b.activation(n.input(0));
  auto y = b.activation(n.output(0));
  if (!x && !y) return;
  std::vector<int64_t> axes;
  if (b.opset() >= axes_input_from) {
    if (n.input(1)) {
      const Tensor* t = n.input(1)->constantData();
      if (!t) return b.freezeNode(n, opLabel(n) + " axes are computed at run time");
      axes = t->toInt64Vector();
    }
  } else {
    axes = n.intsAttr("axes");
  }
  const bool noop = reduce && b.opset() >= axes_input_from && n.intAttr("noop_with_empty_axes", 0);
  if (axes.empty() && !noop) return b.freezeNode(n, opLabel(n) + " acts on all axes");
  const int listed_rank = rankOf(n.isOp("Unsqueeze") ? n.output(0) : n.input(0));
  if (listed_rank < 0) return b.freezeNode(n, opLabel(n) + " has an input of unknown rank");
  bool lists_axis1 = false;
  for (int64_t a : axes) {
    if (a < 0) a += listed_rank;
    if (a == 0) return b.freezeNode(n, opLabel(n) + " acts on the batch axis");
    lists_axis1 = lists_axis1 || a == 1;
  }
  if (!x || !y) return b.freezeNode(n, opLabel(n) + " changes the channel layout");
  if (lists_axis1) unitAxisOne(n, b, reduce);
  keptAxes(n, b, axes, reduce);
}

// Pad: `paddings` attribute in opset 1, `pads` attribute in 2-10, an input from 11; the
// optional `axes` input (18) says which axes the pads are for.
void padRule(const Node& n, CouplingBuilder& b) {
  const int rank = rankOf(n.input(0));
  std::vector<int64_t> pads, axes;
  if (b.opset() >= 11) {
    // Constant, or computed from static shapes (Swin pads its windows by an amount computed
    // from the input's shape).
    const Tensor* t = b.knownValue(n.input(1));
    if (!t) return b.freezeNode(n, opLabel(n) + " pads are computed at run time");
    pads = t->toInt64Vector();
    if (n.input(3)) {
      const Tensor* a = b.knownValue(n.input(3));
      if (!a) return b.freezeNode(n, opLabel(n) + " axes are computed at run time");
      axes = a->toInt64Vector();
    }
  } else {
    pads = n.intsAttr(b.opset() < 2 ? "paddings" : "pads");
  }
  if (axes.empty())
    for (int a = 0; a < rank; ++a) axes.push_back(a);
  if (rank < 0 || pads.size() != 2 * axes.size())
    return b.freezeNode(n, opLabel(n) + " pads do not match the input rank");
  for (size_t i = 0; i < axes.size(); ++i) {
    const int64_t a = axes[i] < 0 ? axes[i] + rank : axes[i];
    if (a == 1 && (pads[i] != 0 || pads[i + axes.size()] != 0))
      return b.freezeNode(n, opLabel(n) + " pads the channel axis");
  }
  passThrough(n, b, /*elementwise=*/false);
}

// Slice: attributes before opset 10, inputs (axes default 0..len(starts)-1) from 10.
void sliceRule(const Node& n, CouplingBuilder& b) {
  if (headSliceRule(n, b)) return;
  auto x = b.activation(n.input(0));
  auto y = b.activation(n.output(0));
  if (!x && !y) return;
  const int rank = rankOf(n.input(0));
  std::vector<int64_t> axes;
  if (b.opset() >= 10) {
    if (n.input(3)) {
      const Tensor* t = n.input(3)->constantData();
      if (!t) return b.freezeNode(n, opLabel(n) + " axes are computed at run time");
      axes = t->toInt64Vector();
    } else {
      auto starts = staticShapeOf(n.input(1));
      if (!starts || starts->size() != 1)
        return b.freezeNode(n, opLabel(n) + " starts have an unknown length");
      for (int64_t i = 0; i < (*starts)[0]; ++i) axes.push_back(i);
    }
  } else {
    axes = n.intsAttr("axes");
    if (axes.empty())
      for (size_t i = 0; i < n.intsAttr("starts").size(); ++i)
        axes.push_back(static_cast<int64_t>(i));
  }
  for (int64_t a : axes)
    if ((a < 0 ? a + rank : a) == 1) {
      if (channelSliceRule(n, b)) return;
      return b.freezeNode(n, opLabel(n) + " slices the channel axis");
    }
  if (!x || !y) return b.freezeNode(n, opLabel(n) + " changes the channel layout");
  b.same(*x, *y);
}

// Softmax/LogSoftmax/Hardmax. Before opset 13 the input is coerced to 2-D
// [prod(d < axis), prod(d >= axis)] with axis defaulting to 1: any axis <= 1 normalises over
// channels and space together. From 13 `axis` (default -1) is one axis.
void softmaxRule(const Node& n, CouplingBuilder& b) {
  const int rank = rankOf(n.input(0));
  const bool coerced = b.opset() < 13;
  int64_t axis = n.intAttr("axis", coerced ? 1 : -1);
  if (axis < 0) axis += rank;
  if (rank < 0) return b.freezeNode(n, opLabel(n) + " input rank is unknown");
  if (coerced && axis <= 1)
    return b.freezeNode(n, opLabel(n) + " (opset " + std::to_string(b.opset()) +
                               ") normalises over channels and space together");
  // The normalised axes (from 13 `axis` only; before, every axis from `axis` on) mix; the
  // others keep their indices.
  std::vector<int> mixed;
  for (int a = static_cast<int>(axis); a < (coerced ? rank : axis + 1); ++a) {
    mixed.push_back(a);
    if (a == 1) {
      b.freezeNode(n, opLabel(n) + " normalises across channels");
    } else if (auto s = b.activationAxis(n.input(0), a)) {
      b.freeze(*s, opLabel(n) + " normalises over axis " + std::to_string(a), &n);
    }
  }
  if (axis != 1) {
    auto x = b.activation(n.input(0));
    auto y = b.activation(n.output(0));
    if (!x || !y) return b.freezeNode(n, opLabel(n) + " has tensors without a static channel axis");
    b.same(*x, *y);
  }
  sameOtherAxes(n.input(0), n.output(0), b, mixed);
}

// The entry of Resize's scales/sizes for the channel axis: 1, or its index in the `axes`
// attribute (opset 18); -1 when `axes` leaves the channel axis out.
int64_t resizeChannelEntry(const Node& n, int64_t opset) {
  const auto axes = n.intsAttr("axes");
  if (n.isOp("Upsample") || opset < 18 || axes.empty()) return 1;
  const int rank = rankOf(n.input(0));
  for (size_t i = 0; i < axes.size(); ++i)
    if ((axes[i] < 0 ? axes[i] + rank : axes[i]) == 1) return static_cast<int64_t>(i);
  return -1;
}

// At scale 1 every coordinate transformation maps output channel c to input channel c exactly
// (half_pixel, pytorch_half_pixel, align_corners, asymmetric; Resize-10 and Upsample are
// asymmetric), except tf_half_pixel_for_nn (Resize-11/12): c + 0.5, which linear and cubic
// blend with c + 1 and nearest rounding up reads as c + 1.
bool shiftsChannelsAtScaleOne(const Node& n) {
  if (n.stringAttr("coordinate_transformation_mode", "") != "tf_half_pixel_for_nn") return false;
  const std::string rounding = n.stringAttr("nearest_mode", "round_prefer_floor");
  return n.stringAttr("mode", "nearest") != "nearest" ||
         (rounding != "floor" && rounding != "round_prefer_floor");
}

// Why a shape value taken from `from` may not size the channel axis of `sized`.
std::string otherSpaceReason(const Node& reader, const Value* from, const Value* sized) {
  return opLabel(reader) + " sizes the channels of '" + sized->name() +
         "' by the channel count of '" + from->name() + "', which is not in the same channel space";
}

// The float32 contents of a constant, or of a Concat (axis 0) of 1-D float32 constants: PyTorch
// exports `F.interpolate(scale_factor=2)` with dynamic axes, unfolded, as scales =
// Concat(Constant [1, 1], Constant [2, 2]).
std::optional<std::vector<float>> constantFloats(const Value* v) {
  if (!v) return std::nullopt;
  if (const Tensor* t = v->constantData()) {
    if (t->dtype() != DType::kFloat32) return std::nullopt;
    return std::vector<float>(t->data<float>().begin(), t->data<float>().end());
  }
  const Node* p = v->producer();
  if (!p || !p->isOp("Concat") || p->intAttr("axis", 0) != 0) return std::nullopt;
  std::vector<float> all;
  for (const Value* in : p->inputs()) {
    const Tensor* t = in ? in->constantData() : nullptr;
    if (!t || t->rank() != 1 || t->dtype() != DType::kFloat32) return std::nullopt;
    all.insert(all.end(), t->data<float>().begin(), t->data<float>().end());
  }
  return all;
}

// Resize (10: X, scales; 11/13/18/19: X, roi, scales, sizes; 18 adds `axes`) and Upsample
// (7: `scales` attribute; 9: scales input). The channel axis must keep its size: a scale of
// exactly 1, or a `sizes` entry that is a literal (rewritten by surgery) or Shape(Z)[1] of a
// tensor Z in X's channel space (PyTorch's `F.interpolate(size=...)` exports
// Concat(Slice(Shape(X), 0, 2), sizes of H and W)).
void resizeRule(const Node& n, CouplingBuilder& b) {
  auto x = b.activation(n.input(0));
  if (!x) return b.freezeNode(n, opLabel(n) + " input has no static channel count");
  // Once the channel axis is proven to keep its size, Y has X's channel count even where shape
  // inference could not tell (sizes computed from a dynamic shape).
  auto keepsChannels = [&]() -> std::optional<int> {
    auto y = b.activation(n.output(0), b.sizeOf(*x));
    if (!y) b.freezeNode(n, opLabel(n) + " output has no channel axis");
    if (y) b.same(*x, *y);
    return y;
  };
  const bool upsample = n.isOp("Upsample");
  const int64_t pos = resizeChannelEntry(n, b.opset());
  if (pos < 0) {
    keepsChannels();  // the channel axis is not resized
    return;
  }
  if (n.stringAttr("coordinate_transformation_mode", "") == "tf_crop_and_resize")
    return b.freezeNode(n, opLabel(n) + " crops with a region of interest");
  if (shiftsChannelsAtScaleOne(n))
    return b.freezeNode(n, opLabel(n) + " reads channels half a channel further on");
  const int scales_input = upsample ? 1 : (b.opset() >= 11 ? 2 : 1);
  const Value* sizes = !upsample && b.opset() >= 11 ? n.input(3) : nullptr;
  const Tensor* sizes_t = sizes ? sizes->constantData() : nullptr;
  if (sizes && !(sizes_t && sizes_t->numel() == 0)) {
    if (n.stringAttr("keep_aspect_ratio_policy", "stretch") != "stretch")
      return b.freezeNode(n, opLabel(n) + " keeps the aspect ratio across the channel axis");
    const ShapeSource s = traceShapeElement(n, 3, pos);
    const auto from =
        s.kind == ShapeSource::kFromShape && s.axis == 1 ? b.activation(s.of) : std::nullopt;
    if (s.kind == ShapeSource::kLiteral && s.literal == b.sizeOf(*x)) {
      auto y = keepsChannels();
      ShapeLiteral lit = s.where;
      lit.spells = n.output(0);
      if (y) b.shapeLiteral(*y, lit);
    } else if (from && b.sizeOf(*from) == b.sizeOf(*x)) {
      if (s.of != n.input(0)) b.requireSame(*from, *x, otherSpaceReason(n, s.of, n.input(0)), &n);
      keepsChannels();
    } else {
      b.freezeNode(n, opLabel(n) + " sizes entry for the channel axis is not followed");
    }
    return;
  }
  std::vector<float> scales;
  if (upsample && b.opset() < 9) {
    if (const Attribute* a = n.findAttribute("scales")) scales = a->floats;
  } else if (auto known = constantFloats(n.input(scales_input))) {
    scales = std::move(*known);
  }
  if (pos >= static_cast<int64_t>(scales.size()))
    return b.freezeNode(n, opLabel(n) + " scales are not a constant");
  if (scales[pos] != 1.0f) return b.freezeNode(n, opLabel(n) + " scales the channel axis");
  keepsChannels();
}

// Ops that take an entry of a shape value as the channel count of their input 0 (the rule of
// each op checks the rest): the entry's input index and position, by op.
using ChannelSizeEntry = std::function<bool(const Node&, int input, int64_t position, int64_t)>;
const std::unordered_map<std::string, ChannelSizeEntry>& channelSizeEntries() {
  static const std::unordered_map<std::string, ChannelSizeEntry> table{
      {"Resize",
       [](const Node& n, int input, int64_t position, int64_t opset) {
         return opset >= 11 && input == 3 && position == resizeChannelEntry(n, opset);
       }},
      {"Reshape", [](const Node&, int input, int64_t position,
                     int64_t opset) { return opset >= 5 && input == 1 && position == 1; }},
  };
  return table;
}

// Shape, axes other than 1: an axis is accounted for when its entry goes nowhere, or only into
// Slice bounds that surgery rewrites as constants (torch.chunk of a joint Q/K/V projection).
void shapeOtherAxes(const Node& n, CouplingBuilder& b, int64_t start, int64_t end) {
  for (int64_t a = start; a < end; ++a) {
    std::vector<ShapeEntryUse> uses;
    if (a == 1 || !shapeEntryUses(n.output(0), {a - start}, uses)) continue;
    if (std::all_of(uses.begin(), uses.end(), [&](const ShapeEntryUse& u) {
          return feedsOnlyChannelSliceBounds(*u.node, u.input, b);
        }))
      b.activationAxis(n.input(0), static_cast<int>(a));
  }
}

// Shape: after pruning it reports the new channel count. Fine while the channel entry goes
// nowhere (Gather/Slice of other elements, or `start`/`end` (opset 15) leave it out), or only,
// through value-keeping shape ops, into the channel entry of a Resize `sizes` or a Reshape
// target whose input is in the same channel space; otherwise it flows into arithmetic we do not
// follow.
void shapeRule(const Node& n, CouplingBuilder& b) {
  auto x = b.activation(n.input(0));
  if (!x) return;
  const int rank = rankOf(n.input(0));
  int64_t start = n.intAttr("start", 0), end = n.intAttr("end", rank);
  if (start < 0) start += rank;
  if (end < 0) end += rank;
  shapeOtherAxes(n, b, std::max<int64_t>(start, 0), std::min<int64_t>(end, rank));
  if (start > 1 || end <= 1) return;
  std::vector<ShapeEntryUse> uses;
  bool followed = shapeEntryUses(n.output(0), {1 - start}, uses);
  std::vector<std::pair<int, const Node*>> sized;
  for (const ShapeEntryUse& u : uses) {
    auto entry = channelSizeEntries().find(u.node->opType());
    const bool ok = u.node->isDefaultDomain() && entry != channelSizeEntries().end() &&
                    entry->second(*u.node, u.input, u.position, b.opset());
    if (!ok && feedsOnlyChannelSliceBounds(*u.node, u.input, b)) continue;
    auto s = ok ? b.activation(u.node->input(0)) : std::nullopt;
    if (!s) followed = false;
    if (!followed) break;
    sized.push_back({*s, u.node});
  }
  if (!followed)
    return b.freeze(*x,
                    opLabel(n) + " passes the channel count of '" + n.input(0)->name() +
                        "' on to ops that are not followed",
                    &n);
  for (const auto& [s, reader] : sized)
    if (reader->input(0) != n.input(0))
      b.requireSame(*x, s, otherSpaceReason(*reader, n.input(0), reader->input(0)), reader);
}

// Size: the element count includes the channels.
void sizeRule(const Node& n, CouplingBuilder& b) {
  if (auto x = b.activation(n.input(0)))
    b.freeze(*x, opLabel(n) + " reads the element count of '" + n.input(0)->name() + "'", &n);
}

// ConstantOfShape: a float activation whose channel count is spelled in a shape tensor.
void constantOfShapeRule(const Node& n, CouplingBuilder& b) {
  if (auto y = b.activation(n.output(0)))
    b.freeze(*y, opLabel(n) + " makes a tensor whose channel count is a shape value", &n);
}

// Gather (1, 11, 13) of an activation along `axis`: y = x[:axis] + indices.shape + x[axis+1:].
// The other axes keep their indices; the gathered axis is selected from and frozen. Rows of a
// constant table (an embedding): the table's other axes are per-channel parameters, sliced with
// the channels they meet (an Add with a layer's output).
void gatherRule(const Node& n, CouplingBuilder& b) {
  const int xr = rankOf(n.input(0)), yr = rankOf(n.output(0)), q = rankOf(n.input(1));
  if (!b.activation(n.input(0)) && !b.activation(n.output(0))) {
    if (xr < 1 || !isFloatingPoint(n.input(0)->dtype()) || n.input(0)->constantData()) return;
  }
  if (xr < 1 || yr < 0 || q < 0 || yr != xr + q - 1)
    return b.freezeNode(n, opLabel(n) + " has tensors of unknown rank");
  int64_t axis = n.intAttr("axis", 0);
  if (axis < 0) axis += xr;
  if (auto s = b.activationAxis(n.input(0), static_cast<int>(axis)))
    b.freeze(*s, opLabel(n) + " selects along axis " + std::to_string(axis), &n);
  const bool table = n.input(0)->constantData() != nullptr;
  for (int i = 0; i < xr; ++i) {
    if (i == axis) continue;
    const int out = i < axis ? i : i + q - 1;
    auto sy = b.activationAxis(n.output(0), out);
    auto sx = table ? b.weight(n, 0, i, MemberRole::kParameter) : b.activationAxis(n.input(0), i);
    if (sx && sy) b.same(*sx, *sy);
  }
  for (int o = static_cast<int>(axis); o < axis + q; ++o)  // the indices' axes
    if (auto s = b.activationAxis(n.output(0), o))
      b.freeze(*s, opLabel(n) + " takes axis " + std::to_string(o) + " from its indices", &n);
}

// Expand (8, 13): x broadcast against the `shape` input. An axis where x has size > 1 and the
// shape entry is 1 (or missing) keeps x's indices (a constant x is a per-index parameter);
// every other output axis is sized by the shape input and frozen.
void expandRule(const Node& n, CouplingBuilder& b) {
  const Value* x = n.input(0);
  const int xr = rankOf(x), yr = rankOf(n.output(0));
  const Tensor* shape = b.knownValue(n.input(1));
  if (!b.activation(n.output(0)) && !b.activation(x)) return;
  if (!shape || xr < 0 || yr < 0)
    return b.freezeNode(n, opLabel(n) + " shape is computed in a way not followed");
  const auto entries = shape->toInt64Vector();
  const int sl = static_cast<int>(entries.size());
  for (int a = 0; a < yr; ++a) {
    const int xa = a - (yr - xr), sa = a - (yr - sl);
    auto ys = b.activationAxis(n.output(0), a);
    if (!ys) return b.freezeNode(n, opLabel(n) + " output has no static axis");
    const int64_t xd = xa >= 0 ? staticShapeOf(x) ? (*staticShapeOf(x))[xa] : -1 : 1;
    const int64_t sd = sa >= 0 ? entries[sa] : 1;
    if (xd > 1 && sd == 1) {
      auto xs =
          x->constantData() ? b.weight(n, 0, xa, MemberRole::kParameter) : b.activationAxis(x, xa);
      if (xs) b.same(*ys, *xs);
      continue;
    }
    b.freeze(*ys, opLabel(n) + " sizes axis " + std::to_string(a) + " from its shape input", &n);
    if (xa >= 0 && !x->constantData())
      if (auto xs = b.activationAxis(x, xa)) b.freeze(*xs, opLabel(n) + " broadcasts it", &n);
  }
}

ChannelRule barrier(std::string why) {
  return [why](const Node& n, CouplingBuilder& b) { b.freezeNode(n, opLabel(n) + " " + why); };
}

// Ops that only make non-feature data: no couplings at all.
void noCoupling(const Node&, CouplingBuilder&) {}

using R = MemberRole;

// A layer's weight and bias as channel inputs, from the weight layout table: the weight's input
// axis reads the data's channels (times `group` when grouped), its output axis makes the
// output's; the bias runs along the output channels (Gemm's C broadcasts against Y).
std::vector<ChannelInput> weightInputs(std::string_view op) {
  const OpWeightLayout& row = *opWeightLayout(op);
  const WeightLayout& l = row.layout;
  const int only_rank = l.matrix ? 2 : 0;
  const auto groupIf = [&](GroupedAxis axis) {
    return l.grouped == axis ? row.group_attr : nullptr;
  };
  std::vector<ChannelInput> inputs = {
      {l.weight_input, l.in_axis, R::kConsumer, false, l.data_channel_axis,
       row.weight_transpose_attr, row.data_transpose_attr, groupIf(GroupedAxis::kInput), false,
       only_rank},
      {l.weight_input, l.out_axis, R::kProducer, true, l.data_channel_axis,
       row.weight_transpose_attr, nullptr, groupIf(GroupedAxis::kOutput), false, only_rank}};
  if (l.bias_input >= 0)
    inputs.push_back(
        {l.bias_input, 0, R::kParameter, true, 1, nullptr, nullptr, nullptr, l.matrix});
  return inputs;
}

}  // namespace

const std::unordered_map<std::string, OpChannels>& channelRules() {
  static const std::unordered_map<std::string, OpChannels> rules = [] {
    std::unordered_map<std::string, OpChannels> r;
    // Elementwise on one tensor, every version: per channel.
    for (const char* op :
         {"Relu",     "LeakyRelu", "Elu",  "Selu",  "Sigmoid", "HardSigmoid", "HardSwish",  "Tanh",
          "Softplus", "Softsign",  "Abs",  "Neg",   "Exp",     "Log",         "Sqrt",       "Erf",
          "Identity", "Dropout",   "Cast", "Floor", "Ceil",    "Round",       "Reciprocal", "Sign"})
      r[op] = {[](const Node& n, CouplingBuilder& b) { passThrough(n, b); }, {}};
    r["Clip"] = {clipRule, {}};
    for (const char* op :
         {"MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})
      r[op] = {poolRule, {}};
    r["Resize"] = {resizeRule, {}};
    r["Upsample"] = {resizeRule, {}};
    for (const char* op : {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Sum", "Mean"})
      r[op] = {broadcastRule, {}};
    // The weights from the layout table (ir/weight_layout.h): Conv W [M, C/group, k...],
    // ConvTranspose W [C, M/group, k...], Gemm B [K, N] (transB: [N, K]) with C broadcasting
    // against Y [M, N], MatMul B [K, N] when constant (a batched B has no per-channel layout).
    r["Conv"] = {convRule, weightInputs("Conv")};
    r["ConvTranspose"] = {convTransposeRule, weightInputs("ConvTranspose")};
    r["Gemm"] = {gemmRule, weightInputs("Gemm")};
    r["MatMul"] = {matmulRule, weightInputs("MatMul")};
    r["BatchNormalization"] = {batchNormRule,
                               {{1, 0, R::kParameter},
                                {2, 0, R::kParameter},
                                {3, 0, R::kParameter},
                                {4, 0, R::kParameter}}};
    r["InstanceNormalization"] = {instanceNormRule, {{1, 0, R::kParameter}, {2, 0, R::kParameter}}};
    r["LayerNormalization"] = {layerNormRule, {}};
    r["GroupNormalization"] = {groupNormRule, {}};
    r["PRelu"] = {preluRule, {{1, 0, R::kParameter, false, 1, nullptr, nullptr, nullptr, true}}};
    r["Concat"] = {concatRule, {}};
    r["Flatten"] = {flattenRule, {}};
    r["Reshape"] = {reshapeRule, {}};
    r["Transpose"] = {transposeRule, {}};
    r["Squeeze"] = {[](const Node& n, CouplingBuilder& b) { axesRule(n, b, 13, false); }, {}};
    r["Unsqueeze"] = {[](const Node& n, CouplingBuilder& b) { axesRule(n, b, 13, false); }, {}};
    r["ReduceSum"] = {[](const Node& n, CouplingBuilder& b) { axesRule(n, b, 13, true); }, {}};
    for (const char* op : {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
                           "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp"})
      r[op] = {[](const Node& n, CouplingBuilder& b) { axesRule(n, b, 18, true); }, {}};
    r["Pad"] = {padRule, {}};
    r["Slice"] = {sliceRule, {}};
    r["Split"] = {splitRule, {}};
    for (const char* op : {"Softmax", "LogSoftmax", "Hardmax"}) r[op] = {softmaxRule, {}};
    r["Shape"] = {shapeRule, {}};
    r["Gather"] = {gatherRule, {}};
    r["Einsum"] = {einsumRule, {}};
    r["Expand"] = {expandRule, {}};
    r["Size"] = {sizeRule, {}};
    r["ConstantOfShape"] = {constantOfShapeRule, {}};
    for (const char* op : {"Constant", "Range"}) r[op] = {noCoupling, {}};
    // Proven barriers, with the reason.
    r["LRN"] = {barrier("sums squares across neighbouring channels"), {}};
    addWindowRules(r);
    return r;
  }();
  return rules;
}

std::optional<std::pair<const Value*, int64_t>> shapeEntrySource(const Node& reader, int input,
                                                                 int64_t element) {
  const ShapeSource s = traceShapeElement(reader, input, element);
  if (s.kind != ShapeSource::kFromShape) return std::nullopt;
  return std::make_pair(s.of, s.axis);
}

}  // namespace nnc::analysis_internal
