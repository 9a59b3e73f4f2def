#include "nncompress/quant/equalize.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "nncompress/ir/batch_norm.h"

namespace nnc::quant {
namespace {

std::optional<float> scalarOf(const Value* v) {
  const Tensor* t = constantFloat32(v);
  if (t == nullptr || t->numel() != 1) return std::nullopt;
  return t->data<float>()[0];
}

Node* onlyReader(const Value* v) {
  if (v == nullptr || v->uses().size() != 1 || v->isGraphOutput()) return nullptr;
  return v->uses()[0].node;
}

struct Pair {
  Node* first = nullptr;
  Node* act = nullptr;  // Relu / Clip, or nullptr
  Node* second = nullptr;
  int64_t channels = 0;
  float clip_max = 0;              // act is a Clip(0, clip_max)
  std::vector<double> cumulative;  // product of the scales applied to each channel
};

bool isConvWithConstWeight(const Node& n) {
  const Tensor* w = constantFloat32(n.input(1));
  if (!n.isOp("Conv") || w == nullptr || w->rank() < 3) return false;
  return n.input(2) == nullptr || constantFloat32(n.input(2)) != nullptr;
}

std::vector<Pair> findPairs(const Graph& g) {
  std::vector<Pair> pairs;
  for (const auto& node : g.nodes()) {
    Node* n = node.get();
    if (!isConvWithConstWeight(*n) || n->numOutputs() != 1) continue;
    Pair p{n};
    Node* next = onlyReader(n->output(0));
    if (next == nullptr) continue;
    if (next->isOp("Relu")) {
      p.act = next;
    } else if (next->isOp("Clip")) {
      // opset >= 11: bounds as inputs; opset 6: attributes.
      std::optional<float> lo = next->numInputs() > 1
                                    ? scalarOf(next->input(1))
                                    : std::optional<float>(next->floatAttr("min", -1));
      std::optional<float> hi = next->numInputs() > 2
                                    ? scalarOf(next->input(2))
                                    : std::optional<float>(next->floatAttr("max", -1));
      if (!lo || !hi || *lo != 0.f || !(*hi > 0.f) || !std::isfinite(*hi)) continue;
      p.act = next;
      p.clip_max = *hi;
    }
    Node* second = p.act ? onlyReader(p.act->output(0)) : next;
    if (second == nullptr || !isConvWithConstWeight(*second) || second->input(0) == nullptr)
      continue;
    if (second->input(0) != (p.act ? p.act->output(0) : n->output(0))) continue;
    const Tensor& w1 = *constantFloat32(n->input(1));
    const Tensor& w2 = *constantFloat32(second->input(1));
    p.channels = w1.dim(0);
    if (w2.dim(1) * second->intAttr("group", 1) != p.channels) continue;
    p.second = second;
    p.cumulative.assign(p.channels, 1.0);
    pairs.push_back(std::move(p));
  }
  return pairs;
}

// Per-channel max |w| over output channel i of `first`, input channel i of `second`.
std::vector<double> outputRanges(const Tensor& w) {
  const int64_t c = w.dim(0), per = w.numel() / c;
  std::vector<double> r(c, 0.0);
  const auto d = w.data<float>();
  for (int64_t i = 0; i < c; ++i)
    for (int64_t j = 0; j < per; ++j) r[i] = std::max<double>(r[i], std::abs(d[i * per + j]));
  return r;
}

// Calls fn(input channel, flat index) for every element of a Conv weight [O, I/g, ...].
template <typename Fn>
void forInputChannels(const Tensor& w, int64_t groups, Fn fn) {
  const int64_t out = w.dim(0), in_g = w.dim(1), spatial = w.numel() / (out * in_g);
  const int64_t out_g = out / groups;
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in_g; ++i)
      for (int64_t s = 0; s < spatial; ++s)
        fn((o / out_g) * in_g + i, (o * in_g + i) * spatial + s);
}

std::vector<double> inputRanges(const Tensor& w, int64_t groups, int64_t channels) {
  std::vector<double> r(channels, 0.0);
  const auto d = w.data<float>();
  forInputChannels(
      w, groups, [&](int64_t c, int64_t idx) { r[c] = std::max<double>(r[c], std::abs(d[idx])); });
  return r;
}

void replaceInput(Graph& g, Node& n, size_t index, Tensor t) {
  Value* old = n.input(index);
  Value* v = g.addInitializer(old ? old->name() + "_eq" : "eq_bias", std::move(t));
  if (index < n.numInputs())
    n.setInput(index, v);
  else
    n.addInput(v);
  if (old && !old->hasUses() && old->isInitializer() && !old->isGraphInput()) g.eraseValue(old);
}

// One equalisation step of a pair; returns the largest |s_i - 1|.
double equalizePair(Graph& g, Pair& p) {
  Tensor w1 = *constantFloat32(p.first->input(1));
  Tensor w2 = *constantFloat32(p.second->input(1));
  const int64_t groups = p.second->intAttr("group", 1);
  const std::vector<double> r1 = outputRanges(w1), r2 = inputRanges(w2, groups, p.channels);
  std::vector<double> s(p.channels, 1.0);
  double moved = 0;
  for (int64_t i = 0; i < p.channels; ++i) {
    if (r1[i] <= 0 || r2[i] <= 0) continue;  // a dead channel: leave it
    s[i] = std::sqrt(r1[i] * r2[i]) / r2[i];
    moved = std::max(moved, std::abs(s[i] - 1));
  }
  if (moved == 0) return 0;
  const int64_t per = w1.numel() / p.channels;
  auto w1d = w1.mutableData<float>();
  for (int64_t i = 0; i < p.channels; ++i)
    for (int64_t j = 0; j < per; ++j) w1d[i * per + j] = float(w1d[i * per + j] / s[i]);
  auto w2d = w2.mutableData<float>();
  forInputChannels(w2, groups, [&](int64_t c, int64_t idx) { w2d[idx] = float(w2d[idx] * s[c]); });
  replaceInput(g, *p.first, 1, std::move(w1));
  replaceInput(g, *p.second, 1, std::move(w2));
  if (const Tensor* b = constantFloat32(p.first->input(2))) {
    Tensor nb = *b;
    auto bd = nb.mutableData<float>();
    for (int64_t i = 0; i < p.channels && i < nb.numel(); ++i) bd[i] = float(bd[i] / s[i]);
    replaceInput(g, *p.first, 2, std::move(nb));
  }
  for (int64_t i = 0; i < p.channels; ++i) p.cumulative[i] *= s[i];
  return moved;
}

// Clip(y, 0, M) on channels scaled by 1/S_i becomes Relu -> Min(M / S_i).
void rewriteClip(Graph& g, const Pair& p) {
  Node* clip = p.act;
  Value* y = clip->output(0);
  Node* relu = g.insertNodeBefore(clip, "Relu", {clip->input(0)}, {y->name() + "_relu"});
  relu->output(0)->setType(y->type());
  const size_t rank = y->type().shape ? y->type().shape->size() : 4;
  Shape shape(std::max<size_t>(rank, 2) - 1, 1);
  shape[0] = p.channels;
  std::vector<float> bound(p.channels);
  for (int64_t i = 0; i < p.channels; ++i) bound[i] = float(p.clip_max / p.cumulative[i]);
  Value* b = g.addInitializer(y->name() + "_bound", Tensor::fromVector<float>(shape, bound));
  Node* min = g.insertNodeBefore(clip, "Min", {relu->output(0), b}, {y->name() + "_min"});
  min->output(0)->setType(y->type());
  g.replaceAllUsesWith(y, min->output(0));
  g.eraseNode(clip);
}

}  // namespace

StatusOr<EqualizeStats> equalizeLayers(Graph& graph, const EqualizeOptions& options) {
  EqualizeStats stats;
  std::vector<Pair> pairs = findPairs(graph);
  stats.pairs = int(pairs.size());
  for (int sweep = 0; sweep < options.iterations && !pairs.empty(); ++sweep) {
    double moved = 0;
    for (Pair& p : pairs) moved = std::max(moved, equalizePair(graph, p));
    ++stats.sweeps;
    if (moved < options.tolerance) break;
  }
  for (const Pair& p : pairs) {
    if (p.act == nullptr || !p.act->isOp("Clip")) continue;
    bool scaled = false;
    for (double c : p.cumulative) scaled = scaled || c != 1.0;
    if (!scaled) continue;
    rewriteClip(graph, p);
    ++stats.clips_rewritten;
  }
  graph.removeDeadNodes();
  return stats;
}

}  // namespace nnc::quant
