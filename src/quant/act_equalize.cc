#include "nncompress/quant/act_equalize.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "nncompress/exec/executor.h"
#include "nncompress/ir/batch_norm.h"

namespace nnc::quant {
namespace {

Node* onlyReader(const Value* v) {
  if (v == nullptr || v->uses().size() != 1 || v->isGraphOutput()) return nullptr;
  return v->uses()[0].node;
}

bool hasConstantWeights(const Node& n) {
  const Tensor* w = constantFloat32(n.input(1));
  if (!n.isOp("Conv") || w == nullptr || w->rank() < 3 || n.numOutputs() != 1) return false;
  return n.input(2) == nullptr || constantFloat32(n.input(2)) != nullptr;
}

struct DepthwisePair {
  Node* first = nullptr;
  Node* second = nullptr;  // depthwise: one input channel per group
  // The quantized tensors between them whose channels the rescaling moves: the second's input,
  // and the PRelu's input too (a Relu is absorbed into the first's output range; a PRelu is not,
  // and with a small slope a channel's negative side can be far wider than its positive one).
  std::vector<const Value*> between;
  int64_t channels = 0;
};

// Activations f with f(m y) = m f(y) for m > 0, per channel: Relu, and PRelu with a constant
// slope (its slope stays with its channel).
bool isPositivelyHomogeneous(const Node& n) {
  if (n.isOp("Relu")) return true;
  return n.isOp("PRelu") && constantFloat32(n.input(1)) != nullptr;
}

// Conv -> [Relu / PRelu] -> depthwise Conv, every value between them read once.
std::optional<DepthwisePair> depthwisePairAt(Node& first) {
  if (!hasConstantWeights(first)) return std::nullopt;
  std::vector<const Value*> between{first.output(0)};
  Node* next = onlyReader(between.back());
  if (next != nullptr && isPositivelyHomogeneous(*next) && next->input(0) == between.back()) {
    if (next->isOp("Relu")) between.clear();
    between.push_back(next->output(0));
    next = onlyReader(between.back());
  }
  if (next == nullptr || !hasConstantWeights(*next) || next->input(0) != between.back())
    return std::nullopt;
  const Tensor& w1 = *constantFloat32(first.input(1));
  const Tensor& w2 = *constantFloat32(next->input(1));
  const int64_t c = w1.dim(0);
  if (w2.dim(0) != c || w2.dim(1) != 1 || next->intAttr("group", 1) != c) return std::nullopt;
  return DepthwisePair{&first, next, between, c};
}

// max |x| per channel (axis 1) of the named tensors over the first samples.
StatusOr<std::map<std::string, std::vector<double>>> channelRanges(
    const Model& model, data::SampleReader& reader, const std::set<std::string>& names,
    const ActEqualizeOptions& o) {
  exec::ExecutorOptions eo;
  eo.num_threads = o.threads;
  NNC_ASSIGN_OR_RETURN(auto ex, exec::Executor::create(model, eo));
  std::map<std::string, std::vector<double>> ranges;
  const int64_t total = std::min(o.samples, reader.size());
  const int64_t batch = std::max<int64_t>(1, o.batch);
  for (int64_t start = 0; start < total; start += batch) {
    NNC_ASSIGN_OR_RETURN(std::vector<Tensor> feeds,
                         reader.readFeeds(start, std::min(batch, total - start)));
    auto observe = [&](const Value& v, const Tensor& t) {
      if (!names.count(v.name()) || t.dtype() != DType::kFloat32 || t.rank() < 2) return;
      const int64_t n = t.dim(0), c = t.dim(1), inner = t.numel() / std::max<int64_t>(1, n * c);
      std::vector<double>& r = ranges[v.name()];
      r.resize(c, 0.0);
      const auto d = t.data<float>();
      for (int64_t i = 0; i < t.numel(); ++i) {
        double& m = r[(i / inner) % c];
        if (std::isfinite(d[i])) m = std::max<double>(m, std::abs(d[i]));
      }
    };
    NNC_ASSIGN_OR_RETURN(auto out, ex->run(std::move(feeds), observe));
    (void)out;
  }
  return ranges;
}

// A copy of the constant at `index` of `n` with element [c, ...] multiplied by factor[c].
void scaleChannels(Graph& g, Node& n, size_t index, const std::vector<double>& factor) {
  Tensor t = *constantFloat32(n.input(index));
  const int64_t c = int64_t(factor.size()), per = t.numel() / c;
  auto d = t.mutableData<float>();
  for (int64_t i = 0; i < c; ++i)
    for (int64_t j = 0; j < per; ++j) d[i * per + j] = float(d[i * per + j] * factor[i]);
  Value* old = n.input(index);
  n.setInput(index, g.addInitializer(old->name() + "_aeq", std::move(t)));
  if (!old->hasUses() && old->isInitializer() && !old->isGraphInput()) g.eraseValue(old);
}

// m_i = min over the tensors t of (r_max(t) / r_i(t)), at most `bound`, so no tensor's range
// grows; 1 for channels that never fire. Empty when a tensor's ranges are missing.
std::vector<double> multipliers(const std::vector<const std::vector<double>*>& ranges,
                                int64_t channels, double bound) {
  std::vector<double> m(channels, bound);
  for (const std::vector<double>* r : ranges) {
    if (r == nullptr || int64_t(r->size()) != channels) return {};
    const double r_max = *std::max_element(r->begin(), r->end());
    for (int64_t i = 0; i < channels; ++i)
      m[i] = (*r)[i] > 0 ? std::min(m[i], r_max / (*r)[i]) : 1.0;
  }
  for (double& v : m) v = std::max(v, 1.0);
  return m;
}

}  // namespace

StatusOr<ActEqualizeStats> equalizeActivationRanges(Model& model, data::SampleReader& reader,
                                                    const ActEqualizeOptions& options) {
  ActEqualizeStats stats;
  Graph& g = *model.graph;
  std::vector<DepthwisePair> pairs;
  std::set<std::string> names;
  for (const auto& node : g.nodes())
    if (auto p = depthwisePairAt(*node)) {
      pairs.push_back(*p);
      for (const Value* v : p->between) names.insert(v->name());
    }
  if (pairs.empty()) return stats;
  NNC_ASSIGN_OR_RETURN(auto ranges, channelRanges(model, reader, names, options));
  for (const DepthwisePair& p : pairs) {
    std::vector<const std::vector<double>*> seen;
    for (const Value* v : p.between) {
      auto it = ranges.find(v->name());
      seen.push_back(it == ranges.end() ? nullptr : &it->second);
    }
    const std::vector<double> m = multipliers(seen, p.channels, options.max_multiplier);
    if (m.empty() || std::all_of(m.begin(), m.end(), [](double v) { return v == 1.0; })) continue;
    std::vector<double> inverse(m.size());
    for (size_t i = 0; i < m.size(); ++i) inverse[i] = 1.0 / m[i];
    scaleChannels(g, *p.first, 1, m);
    if (p.first->input(2) != nullptr) scaleChannels(g, *p.first, 2, m);
    scaleChannels(g, *p.second, 1, inverse);
    stats.largest_multiplier =
        std::max(stats.largest_multiplier, *std::max_element(m.begin(), m.end()));
    ++stats.pairs;
  }
  return stats;
}

}  // namespace nnc::quant
