// Channel rules of the normalisations whose statistics span several channels.
//
// LayerNormalization (17) over the last axis: like its decomposed form (ReduceMean, Sub, Pow,
// Sqrt, Div, Mul, Add) the channels on that axis form a group with Scale and B, marked
// approximate (the pruned statistics cover fewer channels; `--exact-only` leaves it whole).
//
// GroupNormalization (18, 21): num_groups groups of P = C / num_groups consecutive channels,
// each normalised per sample over its channels and space. Whole groups are pruned: the other
// groups' statistics stay as they were, so the output of the kept channels is unchanged (exact).
//   Before: x [N, C, ...], num_groups G, scale/bias [G] (18-20) or [C] (21)
//   After:  x [N, C - kP, ...], num_groups G - k, scale/bias without the k groups' entries
// The group space is a local space (size G) that tiles the channels with repeat P, as a
// grouped convolution's local channels tile its input: the channels are pruned through it.

#include "channel_coupling.h"

namespace nnc::analysis_internal {
namespace {

// Axis a of x and of y carry the same indices, for every a in [from, to) but 1 (coupled by
// the caller).
void sameAxes(const Value* x, const Value* y, CouplingBuilder& b, int from, int to) {
  for (int a = from; a < to; ++a) {
    if (a == 1) continue;
    auto sx = b.activationAxis(x, a), sy = b.activationAxis(y, a);
    if (sx && sy) b.same(*sx, *sy);
  }
}

// A constant 1-D parameter of `length` entries at `input`, coupled with `slot`; an absent
// optional input is fine. False when it is neither.
bool coupleVector(const Node& n, size_t input, int64_t length, int slot, CouplingBuilder& b) {
  const Value* v = n.input(input);
  if (!v) return true;
  const Tensor* t = v->constantData();
  if (!t || t->rank() != 1 || t->dim(0) != length) return false;
  b.same(slot, *b.weight(n, input, 0, MemberRole::kParameter));
  return true;
}

}  // namespace

// LayerNormalization (17): normalises over the axes from `axis` (default -1) on; Scale and B
// have the normalised shape. Over the last axis only, that axis is an approximate group; over
// several axes they are frozen. The leading axes keep their indices.
void layerNormRule(const Node& n, CouplingBuilder& b) {
  const Value* x = n.input(0);
  const Value* y = n.output(0);
  const int rank = rankOf(x);
  if (rank < 1 || rankOf(y) != rank)
    return b.freezeNode(n, opLabel(n) + " has tensors of unknown rank");
  for (size_t i = 1; i < n.numOutputs(); ++i)
    if (isUsed(n.output(i)))
      return b.freezeNode(n, opLabel(n) + " Mean/InvStdDev outputs are used");
  int64_t axis = n.intAttr("axis", -1);
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank) return b.freezeNode(n, opLabel(n) + " axis is out of range");
  sameAxes(x, y, b, 0, static_cast<int>(axis));
  if (axis > 1) {  // axis 1 is not normalised over
    auto sx = b.activation(x), sy = b.activation(y);
    if (!sx || !sy) return b.freezeNode(n, opLabel(n) + " has tensors without a static axis 1");
    b.same(*sx, *sy);
  }
  const std::string what =
      opLabel(n) + " normalises over axis " + std::to_string(axis) + " of '" + x->name() + "'";
  if (axis != rank - 1) {
    for (int a = static_cast<int>(axis); a < rank; ++a)
      for (const Value* v : {x, y})
        if (auto s = b.activationAxis(v, a)) b.freeze(*s, what + " together with others", &n);
    return;
  }
  auto lx = b.activationAxis(x, rank - 1), ly = b.activationAxis(y, rank - 1);
  if (!lx || !ly) return b.freezeNode(n, opLabel(n) + " has tensors without a static last axis");
  b.same(*lx, *ly);
  if (!coupleVector(n, 1, b.sizeOf(*lx), *lx, b) || !coupleVector(n, 2, b.sizeOf(*lx), *lx, b))
    return b.freeze(*lx, opLabel(n) + " Scale/B are not constant vectors over the last axis", &n);
  b.approximate(*lx, what + " (a normalisation: its statistics cover fewer channels)", &n);
}

// GroupNormalization (18, 21); see the top of the file.
void groupNormRule(const Node& n, CouplingBuilder& b) {
  const Value* x = n.input(0);
  const Value* y = n.output(0);
  auto sx = b.activation(x), sy = b.activation(y);
  if (!sx || !sy)
    return b.freezeNode(n, opLabel(n) + " has tensors without a static channel count");
  const int64_t groups = n.intAttr("num_groups", 0), c = b.sizeOf(*sx);
  if (groups <= 0 || c % groups != 0)
    return b.freezeNode(n, opLabel(n) + " num_groups does not divide the channels");
  b.same(*sx, *sy);
  sameAxes(x, y, b, 0, rankOf(x));
  const int local = b.virtualSlot(y, groups);
  b.tile(local, *sx, 1, 0, c / groups);
  b.groupAttr(local, n);
  // Per group before opset 21, per channel from 21.
  const bool per_channel = b.opset() >= 21;
  const int param_slot = per_channel ? *sx : local;
  const int64_t length = per_channel ? c : groups;
  if (!n.input(1) || !n.input(2) || !coupleVector(n, 1, length, param_slot, b) ||
      !coupleVector(n, 2, length, param_slot, b))
    b.freeze(local,
             opLabel(n) + " scale/bias are not constant vectors of " + std::to_string(length) +
                 " entries",
             &n);
}

}  // namespace nnc::analysis_internal
