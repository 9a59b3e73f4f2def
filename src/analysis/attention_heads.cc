// Attention heads: the channels of a Q, K or V projection split into [heads, head_dim] form
// head-level groups, pruned a whole head at a time.
//
// Before (torchvision's nn.MultiheadAttention as exported, one head count h, head size d):
//   qkv = x @ W_in + b_in                        [T, B, 3hd]
//   q, k, v = Slice(qkv, [0, hd)), ...           [T, B, hd] each (bounds computed from Shape)
//   q' = Reshape(q, [T, Bh, d]) ...              the heads on their own axis
//   a = Softmax(q' k'^T) v'                      per head (heads are MatMul batch axes)
//   o = Reshape(a, [T, hd]) @ W_out^T
// After pruning heads H: W_in keeps columns t*hd + c*d + r for c not in H (t < 3, r < d),
// b_in likewise, W_out keeps the matching input columns, the Reshape targets name h - |H| heads
// and the Slices get constant bounds. The other heads compute exactly what they did: removing
// a head equals zeroing its rows of W_out (the zeroed-consumer oracle).
//
// The head axis is the local space of tile edges (as a grouped convolution's local channels):
// the flat axis of each split or merge Reshape is tiled from it with repeat d, the joint
// projection's output with 3 tiles of stride hd. The flat spaces are pruned through the heads:
// their producers join the head group.

#include <algorithm>
#include <cctype>
#include <optional>
#include <string>

#include "channel_coupling.h"

namespace nnc::analysis_internal {
namespace {

// Every dim of `v`, nullopt unless all are static.
std::optional<std::vector<int64_t>> staticDims(const Value* v) {
  if (!v || !v->type().shape) return std::nullopt;
  std::vector<int64_t> dims;
  for (const Dim& d : *v->type().shape) {
    if (!d.isKnown()) return std::nullopt;
    dims.push_back(d.value);
  }
  return dims;
}

// A Reshape between a flat last axis of t * h * d channels and [t, h, d] (h, d >= 2; t is 1
// or, for a joint Q/K/V projection cut later by Gather, >= 2):
//   flat [L..., h*d]      <-> heads [L..., h, d]
//   flat [L..., 1, h*d]   <-> heads [L..., h, d]      (torch's [T, B=1, C] -> [T, B*h, d])
//   flat [L..., t*h*d]     -> heads [L..., t, h, d]   (timm and torchvision Swin: [B, N, 3, h, d])
struct HeadReshape {
  const Value* flat = nullptr;
  const Value* heads = nullptr;
  bool splits = true;  // flat is the input
  int lead = 0;        // leading axes L, the same in both
  bool unit_axis = false;
  int64_t t = 1, h = 0, d = 0;
  int headAxis() const { return lead + (t > 1); }
};

std::optional<HeadReshape> headReshapeShapes(const Node& n) {
  const auto xs = staticDims(n.input(0)), ys = staticDims(n.output(0));
  if (!xs || !ys || xs->empty() || ys->size() < 2) return std::nullopt;
  for (int form = 0; form < 3; ++form) {
    const bool splits = form != 1, tiled = form == 2;
    const auto& f = splits ? *xs : *ys;
    const auto& hs = splits ? *ys : *xs;
    HeadReshape r;
    r.flat = splits ? n.input(0) : n.output(0);
    r.heads = splits ? n.output(0) : n.input(0);
    r.splits = splits;
    r.lead = static_cast<int>(hs.size()) - 2 - tiled;
    if (r.lead < 0) continue;
    r.t = tiled ? hs[r.lead] : 1;
    r.h = hs[r.headAxis()];
    r.d = hs[r.headAxis() + 1];
    r.unit_axis = !tiled && f.size() == hs.size();
    if ((tiled && r.t < 2) || r.h < 2 || r.d < 2 || f.back() != r.t * r.h * r.d) continue;
    if (static_cast<int>(f.size()) != r.lead + 1 + r.unit_axis) continue;
    if (r.unit_axis && f[r.lead] != 1) continue;
    if (!std::equal(hs.begin(), hs.begin() + r.lead, f.begin())) continue;
    return r;
  }
  return std::nullopt;
}

// Where element `element` of `reader`'s input `input` is a literal surgery can rewrite: a
// constant, or a constant part of a Concat (axis 0) of 1-D parts.
std::optional<ShapeLiteral> literalAt(const Node& reader, int input, int64_t element,
                                      int depth = 0) {
  const Value* v = reader.input(input);
  if (!v || depth > 4 || element < 0) return std::nullopt;
  if (const Tensor* t = v->constantData()) {
    if (t->rank() != 1 || element >= t->numel()) return std::nullopt;
    return ShapeLiteral{&reader, input, element, nullptr};
  }
  const Node* p = v->producer();
  if (!p || !p->isOp("Concat") || !p->isDefaultDomain() || p->intAttr("axis", 0) != 0)
    return std::nullopt;
  for (size_t i = 0; i < p->numInputs(); ++i) {
    const auto part = p->input(i) ? p->input(i)->staticShape() : std::nullopt;
    if (!part || part->size() != 1) return std::nullopt;
    if (element < (*part)[0]) return literalAt(*p, static_cast<int>(i), element, depth + 1);
    element -= (*part)[0];
  }
  return std::nullopt;
}

// The target, known before run time, must keep meaning the same after pruning: leading
// entries are the dims (or 0: copy), the entry naming the pruned count (heads of a split, flat
// channels of a merge) is a rewritable literal or the only -1, t and d are literals or -1.
// Returns the literal surgery rewrites (node nullptr: none), or nullopt.
std::optional<ShapeLiteral> headTargetLiteral(const Node& n, const HeadReshape& r,
                                              const CouplingBuilder& b) {
  const Tensor* t = b.knownValue(n.input(1));
  const auto out = staticDims(n.output(0));
  if (!t || t->rank() != 1 || !out || t->numel() != static_cast<int64_t>(out->size()))
    return std::nullopt;
  const auto target = t->toInt64Vector();
  const bool allow_zero = n.intAttr("allowzero", 0) != 0;
  const int64_t pruned = r.splits ? r.headAxis() : static_cast<int64_t>(out->size()) - 1;
  int minus_ones = 0;
  for (size_t i = 0; i < target.size(); ++i) {
    const int64_t e = target[i];
    const bool leading = static_cast<int>(i) < r.lead;
    if (e == -1) {
      ++minus_ones;
    } else if (e == 0) {
      if (allow_zero || !leading) return std::nullopt;
    } else if (e != (*out)[i] || (!leading && !literalAt(n, 1, static_cast<int64_t>(i)))) {
      return std::nullopt;
    }
  }
  if (minus_ones > 1) return std::nullopt;
  if (target[pruned] == -1) return ShapeLiteral{};
  return literalAt(n, 1, pruned);
}

}  // namespace

// y[..., s, c, j] = x[..., s*h*d + c*d + j] (split; merge the other way): head c of the heads
// axis is channels s*h*d + c*d .. + d - 1 of the flat axis for every s < t.
bool headReshapeRule(const Node& n, CouplingBuilder& b) {
  if (!n.isOp("Reshape") || b.opset() < 5) return false;
  const auto r = headReshapeShapes(n);
  const auto literal = r ? headTargetLiteral(n, *r, b) : std::nullopt;
  if (!literal) return false;
  const int flat_rank = rankOf(r->flat);
  const auto target = b.knownValue(n.input(1))->toInt64Vector();
  // A leading entry computed at run time must be a dim of a Shape (else the old rules apply).
  std::vector<std::optional<std::pair<const Value*, int64_t>>> sources(r->lead);
  for (int a = 0; a < r->lead; ++a)
    if (target[a] > 0 && !literalAt(n, 1, a) && !(sources[a] = shapeEntrySource(n, 1, a)))
      return false;
  for (int a = 0; a < r->lead; ++a) {
    auto sf = b.activationAxis(r->flat, a), sh = b.activationAxis(r->heads, a);
    if (!sf || !sh) return false;
    b.same(*sf, *sh);
    // A leading axis may carry a group too ([N, C, H, W] -> [N, C, H*W]): its literal follows,
    // a dim read from a Shape must stay in its space.
    if (auto lit = target[a] > 0 ? literalAt(n, 1, a) : std::nullopt)
      b.shapeLiteral(*sf, {lit->node, lit->input, lit->element, n.output(0)});
    if (!sources[a]) continue;
    auto from = b.activationAxis(sources[a]->first, static_cast<int>(sources[a]->second));
    if (!from) return false;
    b.requireSame(*from, *sf,
                  opLabel(n) + " sizes axis " + std::to_string(a) + " by a dim of '" +
                      sources[a]->first->name() + "' in another channel space",
                  &n);
  }
  const int head_axis = r->headAxis();
  auto heads = b.activationAxis(r->heads, head_axis);
  auto head_size = b.activationAxis(r->heads, head_axis + 1);
  auto flat = b.activationAxis(r->flat, flat_rank - 1);
  if (!heads || !head_size || !flat) return false;
  b.freeze(*head_size,
           opLabel(n) + " splits channels into heads of " + std::to_string(r->d) +
               ": only whole heads are pruned",
           &n);
  if (r->unit_axis || r->t > 1) {
    const Value* v = r->t > 1 ? r->heads : r->flat;
    if (auto s = b.activationAxis(v, r->t > 1 ? r->lead : flat_rank - 2))
      b.freeze(*s, opLabel(n) + " merges or splits this axis with the heads", &n);
  }
  b.tile(*heads, *flat, r->t, r->h * r->d, r->d);
  if (literal->node) {
    const Value* spells = r->splits ? r->heads : r->flat;
    b.shapeLiteral(r->splits ? *heads : *flat,
                   {literal->node, literal->input, literal->element, spells});
  }
  return true;
}

namespace {

// A Slice of the last axis with bounds known before run time, step 1: its [start, end).
struct LastAxisSlice {
  const Node* node = nullptr;
  ChannelSlice slice;
};

std::optional<LastAxisSlice> lastAxisSliceOf(const Node& n, const CouplingBuilder& b) {
  if (!n.isOp("Slice") || !n.isDefaultDomain() || b.opset() < 10 || n.numInputs() < 4)
    return std::nullopt;
  const auto dims = staticDims(n.input(0));
  const Tensor* starts = b.knownValue(n.input(1));
  const Tensor* ends = b.knownValue(n.input(2));
  const Tensor* axes = b.knownValue(n.input(3));
  const Tensor* steps = n.input(4) ? b.knownValue(n.input(4)) : nullptr;
  if (!dims || dims->size() < 2 || !starts || !ends || !axes || axes->numel() != 1 ||
      starts->numel() != 1 || ends->numel() != 1 || (n.input(4) && !steps) ||
      !isFloatingPoint(n.input(0)->dtype()) || n.input(0)->constantData())
    return std::nullopt;
  const int rank = static_cast<int>(dims->size());
  int64_t axis = axes->toInt64Vector()[0];
  if (axis < 0) axis += rank;
  if (axis != rank - 1 || (steps && steps->toInt64Vector() != std::vector<int64_t>{1}))
    return std::nullopt;
  const int64_t len = dims->back();
  auto norm = [len](int64_t i) { return std::clamp<int64_t>(i < 0 ? i + len : i, 0, len); };
  LastAxisSlice s;
  s.node = &n;
  s.slice.node = &n;
  s.slice.axis = rank - 1;
  s.slice.start = norm(starts->toInt64Vector()[0]);
  s.slice.end = std::max(s.slice.start, norm(ends->toInt64Vector()[0]));
  s.slice.starts = *starts;
  s.slice.ends = *ends;
  return s;
}

// The only reader of `v` (not a graph output), else nullptr.
const Node* soleReader(const Value* v) {
  if (!v || v->isGraphOutput() || v->uses().size() != 1) return nullptr;
  const Use& u = v->uses().front();
  return u.input_index == Use::kImplicitUse ? nullptr : u.node;
}

// A joint projection x [..., K*P] cut by K Slices of the last axis into [k*P, (k+1)*P), each
// read only by a Reshape that splits it into heads of one size d.
struct HeadSlices {
  const Value* x = nullptr;
  std::vector<LastAxisSlice> parts;  // in order of k
  std::vector<const Node*> reshapes;
  int64_t d = 0;
  int index = 0;  // which part the asking node is
};

std::optional<HeadSlices> headSlicesOf(const Node& n, const CouplingBuilder& b) {
  auto own = lastAxisSliceOf(n, b);
  if (!own) return std::nullopt;
  HeadSlices hs;
  hs.x = n.input(0);
  const int64_t len = staticDims(hs.x)->back(), part = own->slice.end - own->slice.start;
  if (part <= 0 || len % part != 0 || len / part < 2) return std::nullopt;
  hs.parts.resize(len / part);
  for (const Use& u : hs.x->uses()) {
    if (u.input_index != 0 || !u.node->isOp("Slice")) continue;
    auto s = lastAxisSliceOf(*u.node, b);
    if (!s || s->slice.start % part != 0 || s->slice.end - s->slice.start != part) return {};
    auto& slot = hs.parts[s->slice.start / part];
    if (slot.node) return std::nullopt;  // two Slices of one part
    slot = *s;
  }
  for (const LastAxisSlice& s : hs.parts) {
    const Node* r = s.node ? soleReader(s.node->output(0)) : nullptr;
    const auto shapes = r && r->isOp("Reshape") ? headReshapeShapes(*r) : std::nullopt;
    if (!shapes || !shapes->splits || shapes->t != 1 || !headTargetLiteral(*r, *shapes, b))
      return std::nullopt;
    if (hs.d != 0 && hs.d != shapes->d) return std::nullopt;
    hs.d = shapes->d;
    hs.reshapes.push_back(r);
    if (s.node == &n) hs.index = static_cast<int>(hs.reshapes.size()) - 1;
  }
  return hs;
}

// The heads axis of a head-splitting Reshape's output.
std::optional<int> headsSlot(const Node& reshape, CouplingBuilder& b) {
  const Value* y = reshape.output(0);
  return b.activationAxis(y, rankOf(y) - 2);
}

}  // namespace

bool isHeadSlice(const Node& n, const CouplingBuilder& b) { return headSlicesOf(n, b).has_value(); }

// Part k of the joint projection: channel j of z is channel k*P + j of x. Declared through the
// heads: part 0 tiles x from its heads (K tiles of stride P, repeat d); every part's heads must
// end up in one space with part 0's (the attention MatMuls batch over them), or all freeze.
bool headSliceRule(const Node& n, CouplingBuilder& b) {
  auto hs = headSlicesOf(n, b);
  if (!hs) return false;
  const Value* z = n.output(0);
  const int rank = rankOf(hs->x);
  for (int a = 0; a < rank; ++a) {
    auto sx = b.activationAxis(hs->x, a), sz = b.activationAxis(z, a);
    if (!sx || !sz) return false;
    if (a != rank - 1) b.same(*sx, *sz);
  }
  auto own = headsSlot(*hs->reshapes[hs->index], b);
  auto first = headsSlot(*hs->reshapes[0], b);
  if (!own || !first) return false;
  const int64_t part = hs->parts[0].slice.end - hs->parts[0].slice.start;
  if (hs->index == 0)
    b.tile(*first, *b.activationAxis(hs->x, rank - 1), static_cast<int64_t>(hs->parts.size()), part,
           hs->d);
  else
    b.requireSame(*own, *first,
                  opLabel(n) + " cuts a part whose heads are not those of the other parts", &n);
  b.channel_slices_.push_back(hs->parts[hs->index].slice);
  return true;
}

// MatMul (1, 9, 13) of two activations A [..., M, K] and B [..., K, N]: Y [..., M, N]. The
// batch axes broadcast numpy-style and keep their indices (attention's heads), as do M and N.
// K is summed over a product of two activations: removing an index changes every output by
// more than a zeroed consumer weight would, so it is frozen.
void activationMatmulRule(const Node& n, CouplingBuilder& b) {
  const Value* y = n.output(0);
  const int ry = rankOf(y);
  const Value* ops[2] = {n.input(0), n.input(1)};
  for (const Value* v : ops)
    if (rankOf(v) < 2 || rankOf(v) > ry || !v->type().shape)
      return b.freezeNode(n, opLabel(n) + " multiplies activations of unknown or vector rank");
  for (int i = 0; i < ry - 2; ++i) {
    auto ys = b.activationAxis(y, i);
    for (const Value* v : ops) {
      const int at = i - (ry - rankOf(v));
      if (at < 0) continue;
      const Dim d = (*v->type().shape)[at];
      if (d.isKnown() && d.value == 1) continue;  // broadcast
      auto s = b.activationAxis(v, at);
      if (s && ys) b.same(*s, *ys);
    }
  }
  auto m_a = b.activationAxis(ops[0], -2), m_y = b.activationAxis(y, -2);
  auto n_b = b.activationAxis(ops[1], -1), n_y = b.activationAxis(y, -1);
  if (m_a && m_y) b.same(*m_a, *m_y);
  if (n_b && n_y) b.same(*n_b, *n_y);
  const std::string why = opLabel(n) + " contracts two activations over this axis";
  if (auto k = b.activationAxis(ops[0], -1)) b.freeze(*k, why, &n);
  if (auto k = b.activationAxis(ops[1], -2)) b.freeze(*k, why, &n);
}

namespace {

// An Einsum equation of letters only, one term per input and an explicit output (no ellipsis, no
// label twice in one term: a diagonal); nullopt otherwise.
std::optional<std::vector<std::string>> plainEinsumTerms(std::string eq, size_t inputs) {
  eq.erase(std::remove(eq.begin(), eq.end(), ' '), eq.end());
  const size_t arrow = eq.find("->");
  if (arrow == std::string::npos || eq.find('.') != std::string::npos) return std::nullopt;
  std::vector<std::string> terms;
  for (size_t start = 0; start <= arrow;) {
    const size_t end = std::min(eq.find(',', start), arrow);
    terms.push_back(eq.substr(start, end - start));
    start = end + 1;
  }
  terms.push_back(eq.substr(arrow + 2));
  if (terms.size() != inputs + 1) return std::nullopt;
  for (const std::string& t : terms) {
    std::string sorted = t;
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end() ||
        !std::all_of(t.begin(), t.end(), [](char c) { return std::isalpha(c); }))
      return std::nullopt;
  }
  return terms;
}

}  // namespace

// Einsum (12+) of activations, e.g. attention's "bhid,bhjd->bhij": an axis whose label the
// output keeps carries its indices to that output axis (a size-1 axis broadcasts); an axis summed
// over is frozen, as MatMul's K of two activations. Constant operands, ellipses and diagonals
// are not proven.
void einsumRule(const Node& n, CouplingBuilder& b) {
  const auto terms = plainEinsumTerms(n.stringAttr("equation", ""), n.numInputs());
  if (!terms) return b.freezeNode(n, opLabel(n) + " equation has an ellipsis or a diagonal");
  const Value* y = n.output(0);
  const std::string& out = terms->back();
  if (rankOf(y) != static_cast<int>(out.size()))
    return b.freezeNode(n, opLabel(n) + " output rank does not match its equation");
  for (size_t i = 0; i < n.numInputs(); ++i) {
    const Value* v = n.input(i);
    if (!v || v->constantData() || !v->type().shape ||
        rankOf(v) != static_cast<int>((*terms)[i].size()))
      return b.freezeNode(n, opLabel(n) + " has a constant operand or one of unknown rank");
  }
  const std::string why = opLabel(n) + " sums a product of activations over this axis";
  for (size_t i = 0; i < n.numInputs(); ++i) {
    const std::string& term = (*terms)[i];
    for (size_t a = 0; a < term.size(); ++a) {
      auto s = b.activationAxis(n.input(i), static_cast<int>(a));
      if (!s) continue;
      const size_t at = out.find(term[a]);
      if (at == std::string::npos) {
        b.freeze(*s, why, &n);
        continue;
      }
      const Dim d = (*n.input(i)->type().shape)[a];
      if (d.isKnown() && d.value == 1) continue;  // broadcast
      if (auto o = b.activationAxis(y, static_cast<int>(at))) b.same(*s, *o);
    }
  }
}

}  // namespace nnc::analysis_internal
