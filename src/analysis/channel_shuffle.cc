// Channel shuffle and Slices of the channel axis: channels that move by a fixed index map,
// proven from the Reshape targets and Slice bounds (constants, or shape arithmetic folded from
// static shapes).

#include <algorithm>

#include "channel_coupling.h"

namespace nnc::analysis_internal {
namespace {

// The only node reading `v` (not a graph output, not read inside a subgraph), else nullptr.
const Node* soleUser(const Value* v) {
  if (!v || v->isGraphOutput() || v->uses().size() != 1) return nullptr;
  const Use& u = v->uses().front();
  return u.input_index == Use::kImplicitUse ? nullptr : u.node;
}

// Dims of `v` with -1 for an unknown one; nullopt without a shape.
std::optional<std::vector<int64_t>> dimsOf(const Value* v) {
  if (!v || !v->type().shape) return std::nullopt;
  std::vector<int64_t> dims;
  for (const Dim& d : *v->type().shape) dims.push_back(d.isKnown() ? d.value : -1);
  return dims;
}

// The output dims Reshape(x, target) gives for x of dims `in` (only the batch entry may be
// unknown: it must be copied, by 0 or by the only -1), as the target proves them.
std::optional<std::vector<int64_t>> reshapedDims(const Node& n, const std::vector<int64_t>& in,
                                                 const CouplingBuilder& b) {
  const Tensor* target = b.knownValue(n.input(1));
  if (!target || target->rank() != 1 || n.intAttr("allowzero", 0) != 0 || in.empty())
    return std::nullopt;
  int64_t rest = 1;  // element count of x without the batch axis
  for (size_t a = 1; a < in.size(); ++a) {
    if (in[a] < 0) return std::nullopt;
    rest *= in[a];
  }
  std::vector<int64_t> out = target->toInt64Vector();
  int64_t known = 1;
  int minus_one = -1;
  for (size_t a = 0; a < out.size(); ++a) {
    if (out[a] == 0) {
      if (a >= in.size()) return std::nullopt;
      out[a] = in[a];
    }
    if (out[a] == -1) {
      if (minus_one >= 0) return std::nullopt;
      minus_one = static_cast<int>(a);
    } else if (a > 0) {
      if (out[a] < 0) return std::nullopt;
      known *= out[a];
    }
  }
  if (out.empty() || (out[0] != in[0] && !(out[0] == -1 && minus_one == 0))) return std::nullopt;
  if (minus_one > 0) {
    if (known == 0 || rest % known != 0) return std::nullopt;
    out[minus_one] = rest / known;
    known = rest;
  }
  if (minus_one == 0) out[0] = in[0];
  if (known != rest) return std::nullopt;
  return out;
}

// A shuffle read from its first Reshape: x [N, C, S...] -> [N, g, C/g, S...], Transpose swapping
// axes 1 and 2 only, Reshape to [N, C, S...]; each intermediate read by the next node only.
std::optional<ChannelShuffle> shuffleFrom(const Node& head, const CouplingBuilder& b) {
  if (!head.isOp("Reshape") || b.opset() < 5) return std::nullopt;
  const Node* t = soleUser(head.output(0));
  const Node* tail = t ? soleUser(t->output(0)) : nullptr;
  if (!t || !t->isOp("Transpose") || !tail || !tail->isOp("Reshape") ||
      tail->input(0) != t->output(0) || !t->isDefaultDomain() || !tail->isDefaultDomain())
    return std::nullopt;
  const auto in = dimsOf(head.input(0));
  const int rank = in ? static_cast<int>(in->size()) : 0;
  if (rank < 2) return std::nullopt;
  std::vector<int64_t> perm{0, 2, 1};
  for (int a = 3; a <= rank; ++a) perm.push_back(a);
  if (t->intsAttr("perm") != perm) return std::nullopt;
  const auto split = reshapedDims(head, *in, b);
  if (!split || static_cast<int>(split->size()) != rank + 1) return std::nullopt;
  const int64_t g = (*split)[1], per_group = (*split)[2], c = (*in)[1];
  if (g * per_group != c) return std::nullopt;
  for (int a = 2; a < rank; ++a)
    if ((*split)[a + 1] != (*in)[a]) return std::nullopt;
  std::vector<int64_t> swapped = *split;
  std::swap(swapped[1], swapped[2]);
  const auto merged = reshapedDims(*tail, swapped, b);
  if (!merged || *merged != *in) return std::nullopt;
  ChannelShuffle s;
  s.head = &head;
  s.tail = tail;
  s.input = head.input(0);
  s.output = tail->output(0);
  for (int64_t a = 0; a < g; ++a)
    for (int64_t j = 0; j < per_group; ++j) s.output_of.push_back(j * g + a);
  return s;
}

// Every axis of every value the node reads or writes is looked at (nothing there carries a
// group: the shuffle's own coupling is declared by the head).
void touchAllAxes(const Node& n, CouplingBuilder& b) {
  for (const Value* v : {n.input(0), n.output(0)})
    for (int a = 0; a < rankOf(v); ++a) b.activationAxis(v, a);
}

}  // namespace

bool channelShuffleRule(const Node& n, CouplingBuilder& b) {
  if (auto s = shuffleFrom(n, b)) {
    auto x = b.activation(s->input), y = b.activation(s->output);
    if (!x || !y) return false;
    for (int a = 0; a < rankOf(s->input); ++a) {
      if (a == 1) continue;  // batch and spatial positions stay where they are
      auto sx = b.activationAxis(s->input, a), sy = b.activationAxis(s->output, a);
      if (sx && sy) b.same(*sx, *sy);
    }
    touchAllAxes(n, b);
    b.mapped(*x, *y, s->output_of);
    b.shuffles_.push_back(std::move(*s));
    return true;
  }
  // The tail: its shuffle was declared at the head.
  const Node* t = n.input(0) ? n.input(0)->producer() : nullptr;
  const Node* head = t && t->isOp("Transpose") && t->input(0) ? t->input(0)->producer() : nullptr;
  if (!head || !head->isDefaultDomain()) return false;
  auto s = shuffleFrom(*head, b);
  if (!s || s->tail != &n) return false;
  b.activation(n.input(0));
  b.activation(n.output(0));
  touchAllAxes(n, b);
  for (int a = 0; a < rankOf(n.output(0)); ++a) b.activationAxis(n.output(0), a);
  return true;
}

namespace {

// A Slice (opset 10+) of the channel axis of x with known starts/ends, step 1: the entry of
// the channel axis and its normalised [start, end).
std::optional<ChannelSlice> channelSliceOf(const Node& n, const CouplingBuilder& b) {
  if (!n.isOp("Slice") || b.opset() < 10 || n.numInputs() < 3) return std::nullopt;
  const Tensor* starts = b.knownValue(n.input(1));
  const Tensor* ends = b.knownValue(n.input(2));
  const int rank = rankOf(n.input(0));
  const auto dims = dimsOf(n.input(0)), out_dims = dimsOf(n.output(0));
  if (!starts || !ends || rank < 2 || !dims || (*dims)[1] < 0 || !out_dims ||
      static_cast<int>(out_dims->size()) != rank || !isFloatingPoint(n.input(0)->dtype()) ||
      n.input(0)->constantData())
    return std::nullopt;
  const auto s = starts->toInt64Vector(), e = ends->toInt64Vector();
  std::vector<int64_t> axes;
  if (n.input(3)) {
    const Tensor* t = b.knownValue(n.input(3));
    if (!t) return std::nullopt;
    axes = t->toInt64Vector();
  } else {
    for (size_t i = 0; i < s.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  }
  std::vector<int64_t> steps(axes.size(), 1);
  if (n.input(4)) {
    const Tensor* t = b.knownValue(n.input(4));
    if (!t) return std::nullopt;
    steps = t->toInt64Vector();
  }
  if (s.size() != axes.size() || e.size() != axes.size() || steps.size() != axes.size())
    return std::nullopt;
  const int64_t c = (*dims)[1];
  for (size_t k = 0; k < axes.size(); ++k) {
    if ((axes[k] < 0 ? axes[k] + rank : axes[k]) != 1) continue;
    if (steps[k] != 1) return std::nullopt;
    auto norm = [c](int64_t i) { return std::clamp<int64_t>(i < 0 ? i + c : i, 0, c); };
    ChannelSlice slice;
    slice.node = &n;
    slice.element = static_cast<int64_t>(k);
    slice.start = norm(s[k]);
    slice.end = std::max(slice.start, norm(e[k]));
    slice.starts = *starts;
    slice.ends = *ends;
    if ((*out_dims)[1] != slice.end - slice.start) return std::nullopt;
    return slice;
  }
  return std::nullopt;
}

}  // namespace

// z = x[:, start:end]: index i of x is index i - start of z inside the range, else dropped.
// The other sliced axes are left to the caller's rule (frozen where a group reaches them).
bool channelSliceRule(const Node& n, CouplingBuilder& b) {
  auto slice = channelSliceOf(n, b);
  if (!slice) return false;
  auto x = b.activation(n.input(0)), z = b.activation(n.output(0));
  if (!x || !z) return false;
  std::vector<int64_t> table(b.sizeOf(*x), -1);
  for (int64_t i = slice->start; i < slice->end; ++i) table[i] = i - slice->start;
  b.mapped(*x, *z, std::move(table));
  b.channel_slices_.push_back(*slice);
  return true;
}

namespace {

// The part sizes of a Split of `length` entries: the `split` attribute (before 13) or input
// (from 13, known before run time), else equal parts (before 13). Nullopt when they are unknown
// or do not add up.
std::optional<std::vector<int64_t>> splitSizes(const Node& n, int64_t length,
                                               const CouplingBuilder& b) {
  std::vector<int64_t> sizes;
  if (b.opset() < 13) {
    sizes = n.intsAttr("split");
  } else {
    // Equal parts without a sizes input could only become unequal by adding one.
    const Tensor* t = n.input(1) ? b.knownValue(n.input(1)) : nullptr;
    if (!t) return std::nullopt;
    sizes = t->toInt64Vector();
  }
  const auto parts = static_cast<int64_t>(n.numOutputs());
  if (sizes.empty()) {
    if (length % parts != 0) return std::nullopt;
    sizes.assign(parts, length / parts);
  }
  int64_t total = 0;
  for (int64_t s : sizes) total += s < 0 ? length + 1 : s;
  if (total != length || static_cast<int64_t>(sizes.size()) != parts) return std::nullopt;
  return sizes;
}

}  // namespace

// y_k = x[:, off_k : off_k + size_k]: index i of x is index i - off_k of the part holding it.
void splitRule(const Node& n, CouplingBuilder& b) {
  const int rank = rankOf(n.input(0));
  int64_t axis = n.intAttr("axis", 0);
  if (axis < 0) axis += rank;
  auto x = b.activation(n.input(0));
  if (!x) return;
  const std::string label = n.opType() + (n.name().empty() ? "" : " '" + n.name() + "'");
  if (axis != 1) return b.freezeNode(n, label + " splits axis " + std::to_string(axis));
  const auto sizes = splitSizes(n, b.sizeOf(*x), b);
  if (b.sizeOf(*x) < 0 || !sizes) return b.freezeNode(n, label + " part sizes are not known");
  int64_t offset = 0;
  for (size_t k = 0; k < n.numOutputs(); ++k) {
    auto y = b.activation(n.output(k));
    if (!y || b.sizeOf(*y) != (*sizes)[k]) return b.freezeNode(n, label + " parts do not match");
    std::vector<int64_t> table(b.sizeOf(*x), -1);
    for (int64_t i = 0; i < (*sizes)[k]; ++i) table[offset + i] = i;
    b.mapped(*x, *y, std::move(table));
    offset += (*sizes)[k];
  }
  b.channel_splits_.push_back({&n, *sizes, b.opset() >= 13 && n.input(1) != nullptr});
}

bool feedsOnlyChannelSliceBounds(const Node& n, int input, const CouplingBuilder& b) {
  std::vector<const Node*> todo{&n};
  std::vector<int> inputs{input};
  for (int steps = 0; !todo.empty(); ++steps) {
    const Node* cur = todo.back();
    const int at = inputs.back();
    todo.pop_back();
    inputs.pop_back();
    if (steps > 64 || !cur->isDefaultDomain()) return false;
    if (cur->isOp("Slice") && (at == 1 || at == 2)) {
      if (!channelSliceOf(*cur, b) && !isHeadSlice(*cur, b)) return false;
      continue;
    }
    // Integer arithmetic only: its outputs must go on to such bounds too.
    for (const Value* out : cur->outputs()) {
      if (!out) continue;
      if (out->isGraphOutput() || isFloatingPoint(out->dtype())) return false;
      for (const Use& u : out->uses()) {
        if (u.input_index == Use::kImplicitUse) return false;
        todo.push_back(u.node);
        inputs.push_back(u.input_index);
      }
    }
  }
  return true;
}

}  // namespace nnc::analysis_internal
