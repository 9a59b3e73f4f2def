#include "nncompress/prune/criteria.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace nnc {
namespace {

// Sum over the group's producer and consumer weights of a per-channel norm of the weight slice:
// score_c = sum_members ( sum_{i in slice(c)} |w_i|^p ) ^ (1/p), each member normalised by its
// mean so that a large layer does not drown a small one.
class NormCriterion : public Criterion {
 public:
  explicit NormCriterion(int p) : p_(p) {}
  std::string name() const override { return p_ == 1 ? "l1" : "l2"; }

  StatusOr<std::vector<double>> score(const ChannelGroup& g) override {
    std::vector<double> total(g.channels, 0.0);
    for (const GroupMember& m : g.members) {
      if (m.role != MemberRole::kProducer && m.role != MemberRole::kConsumer) continue;
      const Tensor* t = m.value->constantData();
      if (!t || t->dtype() != DType::kFloat32) continue;
      const auto data = t->data<float>();
      const Shape& s = t->shape();
      int64_t outer = 1, inner = 1;
      for (int a = 0; a < m.axis; ++a) outer *= s[a];
      for (int a = m.axis + 1; a < t->rank(); ++a) inner *= s[a];
      const int64_t extent = s[m.axis];
      std::vector<double> per_index(extent, 0.0);
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t i = 0; i < extent; ++i) {
          const float* row = data.data() + (o * extent + i) * inner;
          double acc = 0;
          for (int64_t j = 0; j < inner; ++j)
            acc += p_ == 1 ? std::abs(row[j]) : double(row[j]) * row[j];
          per_index[i] += acc;
        }
      std::vector<double> member(g.channels, 0.0);
      for (int64_t c = 0; c < g.channels; ++c)
        for (int64_t idx : m.mapping.indices({c})) member[c] += per_index[idx];
      if (p_ == 2)
        for (double& v : member) v = std::sqrt(v);
      const double mean =
          std::accumulate(member.begin(), member.end(), 0.0) / std::max<int64_t>(1, g.channels);
      for (int64_t c = 0; c < g.channels; ++c) total[c] += mean > 0 ? member[c] / mean : 0.0;
    }
    return total;
  }

 private:
  int p_;
};

class RandomCriterion : public Criterion {
 public:
  explicit RandomCriterion(uint64_t seed) : rng_(seed) {}
  std::string name() const override { return "random"; }
  StatusOr<std::vector<double>> score(const ChannelGroup& g) override {
    std::uniform_real_distribution<double> u(0.0, 1.0);
    std::vector<double> s(g.channels);
    for (double& v : s) v = u(rng_);
    return s;
  }

 private:
  std::mt19937_64 rng_;
};

bool excluded(const ChannelGroup& g, const std::vector<std::string>& exclude) {
  for (const Node* n : g.sources)
    for (const std::string& name : exclude)
      if (n->name() == name || (n->output(0) && n->output(0)->name() == name)) return true;
  return false;
}

}  // namespace

StatusOr<std::unique_ptr<Criterion>> makeCriterion(const std::string& name, uint64_t seed) {
  if (name == "l1") return std::unique_ptr<Criterion>(new NormCriterion(1));
  if (name == "l2") return std::unique_ptr<Criterion>(new NormCriterion(2));
  if (name == "random") return std::unique_ptr<Criterion>(new RandomCriterion(seed));
  std::string known;
  for (const auto& n : criterionNames()) known += (known.empty() ? "" : ", ") + n;
  return invalidArgument("unknown pruning method '" + name + "' (known: " + known + ")");
}

std::vector<std::string> criterionNames() { return {"l1", "l2", "random"}; }

std::vector<int64_t> topChannels(const std::vector<double>& scores, int64_t keep_count) {
  std::vector<int64_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  // Stable: ties keep the lower index, so plans are deterministic.
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return scores[a] > scores[b]; });
  order.resize(std::min<int64_t>(keep_count, static_cast<int64_t>(order.size())));
  std::sort(order.begin(), order.end());
  return order;
}

StatusOr<std::vector<GroupKeep>> planUniformPruning(const ChannelAnalysis& analysis,
                                                    Criterion& criterion,
                                                    const UniformPlanOptions& options) {
  if (!(options.ratio >= 0.0 && options.ratio < 1.0))
    return invalidArgument("--ratio must be in [0, 1), got " + std::to_string(options.ratio));
  if (options.round_to < 1) return invalidArgument("--round-to must be at least 1");
  std::vector<GroupKeep> plan;
  for (const ChannelGroup& g : analysis.groups) {
    if (!g.prunable || excluded(g, options.exclude)) continue;
    int64_t keep = g.channels - static_cast<int64_t>(std::floor(g.channels * options.ratio));
    if (options.round_to > 1) {
      keep = (keep + options.round_to / 2) / options.round_to * options.round_to;
      keep = std::clamp<int64_t>(keep, std::min(options.round_to, g.channels), g.channels);
    }
    keep = std::max<int64_t>(1, keep);
    if (keep >= g.channels) continue;
    NNC_ASSIGN_OR_RETURN(std::vector<double> scores, criterion.score(g));
    plan.push_back({g.id, topChannels(scores, keep)});
  }
  return plan;
}

}  // namespace nnc
