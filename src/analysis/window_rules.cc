// Channels on the last axis through Swin-style shifted windows (torchvision swin_t):
//
//   x [B, H, W, C] -> Pad (H, W to multiples of the window) -> roll (Slice + Concat on H, W)
//     -> Reshape [B, H/w, w, W/w, w, C] -> Transpose -> Reshape [B*nW, w*w, C] -> attention
//     -> the reverse -> Slice (crop) -> Add to x
//   PatchMerging: x[:, 0::2, 0::2, :] ... (strided Slices on H, W) -> Concat on C (4 copies of
//     the same channels) -> LayerNorm(4C) -> Linear(4C -> 2C)
//
// The table's rules see axis 1 (here H); these wrappers add what they do with the other axes:
// a Slice or Pad that leaves an axis as it is keeps its indices (an axis it changes is frozen); a
// Concat of copies of one channel space along an axis other than 1 tiles it; a Reshape that
// keeps the last axis may have its target computed from static shapes (surgery replaces it by a
// constant spelling the pruned count); a Shape that reads such an axis pins every computation
// it feeds to its folded value, so that head_dim = C / heads keeps the original count.

#include <algorithm>
#include <set>

#include "channel_coupling.h"

namespace nnc::analysis_internal {
namespace {

bool isActivation(const Value* v) {
  return v && isFloatingPoint(v->dtype()) && !v->constantData() && v->staticShape();
}

// The slot of axis a (axis 1 through activation(), which the table's rules use for it).
std::optional<int> slotOf(const Value* v, int a, CouplingBuilder& b) {
  return a == 1 ? b.activation(v) : b.activationAxis(v, a);
}

std::optional<std::vector<int64_t>> knownInts(const Value* v, const CouplingBuilder& b) {
  const Tensor* t = b.knownValue(v);
  if (!t || t->rank() > 1) return std::nullopt;
  return t->toInt64Vector();
}

// Per axis of a Slice's input: whether the Slice leaves it as it is (start 0, step 1, same
// size). Nullopt when its axes, starts or steps are not known before run time.
std::optional<std::vector<bool>> axesSliceKeeps(const Node& n, const CouplingBuilder& b) {
  const int rank = rankOf(n.input(0));
  std::vector<int64_t> axes, starts, steps;
  if (b.opset() >= 10) {
    auto s = knownInts(n.input(1), b);
    auto a = n.input(3) ? knownInts(n.input(3), b) : std::make_optional(std::vector<int64_t>());
    auto st = n.input(4) ? knownInts(n.input(4), b) : std::make_optional(std::vector<int64_t>());
    if (!s || !a || !st) return std::nullopt;
    starts = *s, axes = *a, steps = *st;
  } else {
    starts = n.intsAttr("starts");
    axes = n.intsAttr("axes");
  }
  if (axes.empty())
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (axes.size() != starts.size() || steps.size() != starts.size()) return std::nullopt;
  const Shape xs = *n.input(0)->staticShape(), ys = *n.output(0)->staticShape();
  std::vector<bool> keeps(rank, true);
  for (size_t i = 0; i < axes.size(); ++i) {
    const int64_t a = axes[i] < 0 ? axes[i] + rank : axes[i];
    if (a < 0 || a >= rank) return std::nullopt;
    const int64_t start = starts[i] < 0 ? std::max<int64_t>(0, starts[i] + xs[a]) : starts[i];
    keeps[a] = keeps[a] && start == 0 && steps[i] == 1 && xs[a] == ys[a];
  }
  return keeps;
}

// Slice: after the table's rule (axis 1), the other axes keep their indices where the Slice
// leaves them alone; an axis it crops, shifts or strides is frozen.
void sliceOtherAxes(const Node& n, CouplingBuilder& b) {
  const Value* x = n.input(0);
  const Value* y = n.output(0);
  if (!isActivation(x) || !isActivation(y) || rankOf(x) != rankOf(y)) return;
  auto keeps = axesSliceKeeps(n, b);
  if (!keeps) return;  // the analyzer freezes the axes nobody accounted for
  for (int a = 0; a < rankOf(x); ++a) {
    if (a == 1 || b.sawAxis(x, a) || b.sawAxis(y, a)) continue;  // the table's rule decided
    auto sx = b.activationAxis(x, a), sy = b.activationAxis(y, a);
    if (!sx || !sy) continue;
    if ((*keeps)[a]) {
      b.same(*sx, *sy);
    } else {
      const std::string why = opLabel(n) + " slices axis " + std::to_string(a);
      b.freeze(*sx, why, &n);
      b.freeze(*sy, why, &n);
    }
  }
}

// Pad: after the table's rule (axis 1), an axis it does not pad keeps its indices, whatever
// the mode; a padded one is frozen. Pads may be computed from static shapes (Swin).
void padOtherAxes(const Node& n, CouplingBuilder& b) {
  const Value* x = n.input(0);
  const Value* y = n.output(0);
  const int rank = rankOf(x);
  if (!isActivation(x) || !isActivation(y) || rankOf(y) != rank) return;
  std::vector<int64_t> pads, axes;
  if (b.opset() >= 11) {
    auto p = knownInts(n.input(1), b);
    auto a = n.input(3) ? knownInts(n.input(3), b) : std::make_optional(std::vector<int64_t>());
    if (!p || !a) return;
    pads = *p, axes = *a;
  } else {
    pads = n.intsAttr(b.opset() < 2 ? "paddings" : "pads");
  }
  if (axes.empty())
    for (int a = 0; a < rank; ++a) axes.push_back(a);
  if (pads.size() != 2 * axes.size()) return;
  std::vector<bool> padded(rank, false);
  for (size_t i = 0; i < axes.size(); ++i) {
    const int64_t a = axes[i] < 0 ? axes[i] + rank : axes[i];
    if (a < 0 || a >= rank) return;
    padded[a] = padded[a] || pads[i] != 0 || pads[i + axes.size()] != 0;
  }
  for (int a = 0; a < rank; ++a) {
    if (a == 1 || b.sawAxis(x, a) || b.sawAxis(y, a)) continue;  // the table's rule decided
    auto sx = b.activationAxis(x, a), sy = b.activationAxis(y, a);
    if (!sx || !sy) continue;
    if (!padded[a]) {
      b.same(*sx, *sy);
    } else {
      const std::string why = opLabel(n) + " pads axis " + std::to_string(a);
      b.freeze(*sx, why, &n);
      b.freeze(*sy, why, &n);
    }
  }
}

// Concat along an axis other than 1 of k copies of one channel space (PatchMerging's four
// strided views of the same tokens): channel j of the space is entry t * C + j of the output
// for every t < k, a tile. The table's rule would give each copy its offset, which reaches the
// output along k paths. False when this does not apply.
bool concatOfCopies(const Node& n, CouplingBuilder& b) {
  const Value* y = n.output(0);
  const int rank = rankOf(y);
  if (!isActivation(y) || rank < 2 || n.numInputs() < 2) return false;
  int64_t axis = n.intAttr("axis", 1);
  if (axis < 0) axis += rank;
  if (axis <= 1 || axis >= rank) return false;
  std::optional<int> first;
  for (const Value* v : n.inputs()) {
    if (!isActivation(v) || rankOf(v) != rank) return false;
    auto s = b.activationAxis(v, static_cast<int>(axis));
    if (!s || (first && (b.find(*s) != b.find(*first) || b.sizeOf(*s) != b.sizeOf(*first))))
      return false;
    if (!first) first = s;
  }
  const int64_t size = b.sizeOf(*first);
  const int64_t copies = static_cast<int64_t>(n.numInputs());
  auto ys = b.activationAxis(y, static_cast<int>(axis));
  if (size <= 0 || !ys || b.sizeOf(*ys) != size * copies) return false;
  b.tile(*first, *ys, copies, size);
  for (int a = 0; a < rank; ++a) {
    if (a == axis) continue;
    auto sy = slotOf(y, a, b);
    for (const Value* v : n.inputs())
      if (auto sv = slotOf(v, a, b); sv && sy) b.same(*sv, *sy);
  }
  return true;
}

int64_t leadingProduct(const Shape& s) {
  int64_t p = 1;
  for (size_t i = 0; i + 1 < s.size(); ++i) p *= s[i];
  return p;
}

// Reshape that regroups the leading axes and keeps the last one ([B, H, W, C] <-> [B, H/w, w,
// W/w, w, C] <-> [B*nW, w*w, C]) with a target computed from static shapes: y[..., c] is
// x[..., c]. Surgery replaces the target by its folded value with the pruned count as its last
// entry. Constant targets are the table rule's. False when this does not apply.
bool windowReshape(const Node& n, CouplingBuilder& b) {
  const Value* x = n.input(0);
  const Value* y = n.output(0);
  const Value* target = n.input(1);
  if (b.opset() < 5 || !target || target->constantData() || !isActivation(x) || !isActivation(y))
    return false;
  const Tensor* folded = b.knownValue(target);
  const Shape xs = *x->staticShape(), ys = *y->staticShape();
  if (!folded || folded->rank() != 1 || xs.size() < 2 || ys.size() < 2 || xs.back() != ys.back() ||
      xs[1] == ys[1] || leadingProduct(xs) != leadingProduct(ys))
    return false;
  const std::vector<int64_t> entries = folded->toInt64Vector();
  if (entries.size() != ys.size() || !(entries.back() == xs.back() || entries.back() == -1))
    return false;
  int minus_ones = 0;
  for (int64_t e : entries) {
    if (e == 0 || e < -1) return false;
    minus_ones += e == -1;
  }
  if (minus_ones > 1) return false;
  if (channelShuffleRule(n, b)) return true;  // the table's rule would find it first
  auto sx = b.activationAxis(x, -1), sy = b.activationAxis(y, -1);
  if (!sx || !sy) return false;
  b.same(*sx, *sy);
  if (entries.back() > 0) {
    ShapeLiteral lit{&n, 1, static_cast<int64_t>(entries.size()) - 1, y};
    lit.value = *folded;
    b.shapeLiteral(*sy, lit);
  }
  for (const Value* v : {x, y})
    if (rankOf(v) > 2)
      if (auto s = b.activation(v))
        b.freeze(*s, opLabel(n) + " regroups axis 1 of '" + v->name() + "'", &n);
  return true;
}

// The inputs where the folded computation downstream of `v` ends: (node, input) pairs whose
// node's output is not folded (or has several outputs). False when one of them reads a value
// that is not folded, or a graph output is reached.
bool foldedFrontier(const Value* v, const CouplingBuilder& b,
                    std::set<std::pair<const Node*, int>>& frontier, std::set<const Value*>& seen) {
  if (!seen.insert(v).second) return true;
  if (v->isGraphOutput() || seen.size() > 4096) return false;
  for (const Use& u : v->uses()) {
    const Node& n = *u.node;
    if (u.input_index < 0) return false;  // read inside a subgraph
    if (n.numOutputs() == 1 && n.output(0) && b.knownValue(n.output(0))) {
      if (!foldedFrontier(n.output(0), b, frontier, seen)) return false;
      continue;
    }
    if (!b.knownValue(v)) return false;
    frontier.insert({&n, u.input_index});
  }
  return true;
}

// Shape: after the table's rule (axis 1), every other axis the output holds. Pruning that axis
// changes the entry, so whatever it feeds is pinned to its folded value (applied only when the
// axis's group is pruned); the Reshapes of the group's own tensors rewrite their target's last
// entry on top (windowReshape). An entry that flows into computations not folded freezes it.
void shapeOtherAxes(const Node& n, CouplingBuilder& b) {
  const Value* x = n.input(0);
  const int rank = rankOf(x);
  if (!x || !isFloatingPoint(x->dtype()) || x->constantData() || rank < 0) return;
  auto clampAxis = [rank](int64_t a) { return std::clamp<int64_t>(a < 0 ? a + rank : a, 0, rank); };
  const int64_t start = clampAxis(n.intAttr("start", 0)), end = clampAxis(n.intAttr("end", rank));
  std::set<std::pair<const Node*, int>> frontier;
  std::set<const Value*> seen;
  const bool folded = foldedFrontier(n.output(0), b, frontier, seen);
  for (int a = 0; a < rank; ++a) {
    if (a == 1 || b.sawAxis(x, a)) continue;  // the table's rule decided
    auto s = b.activationAxis(x, a);
    if (!s || a < start || a >= end) continue;
    if (!folded) {
      b.freeze(*s,
               opLabel(n) + " passes axis " + std::to_string(a) + " of '" + x->name() +
                   "' to computations not known before run time",
               &n);
      continue;
    }
    for (const auto& [node, input] : frontier) {
      ShapeLiteral pin{node, input, -1, nullptr};
      pin.value = *b.knownValue(node->input(input));
      b.shapeLiteral(*s, pin);
    }
  }
}

}  // namespace

void addWindowRules(std::unordered_map<std::string, OpChannels>& rules) {
  auto after = [&](const char* op, void (*extra)(const Node&, CouplingBuilder&)) {
    ChannelRule table = rules.at(op).rule;
    rules[op].rule = [table, extra](const Node& n, CouplingBuilder& b) {
      table(n, b);
      extra(n, b);
    };
  };
  auto before = [&](const char* op, bool (*first)(const Node&, CouplingBuilder&)) {
    ChannelRule table = rules.at(op).rule;
    rules[op].rule = [table, first](const Node& n, CouplingBuilder& b) {
      if (!first(n, b)) table(n, b);
    };
  };
  after("Slice", sliceOtherAxes);
  after("Pad", padOtherAxes);
  after("Shape", shapeOtherAxes);
  before("Concat", concatOfCopies);
  before("Reshape", windowReshape);
}

}  // namespace nnc::analysis_internal
