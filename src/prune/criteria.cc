#include "nncompress/prune/criteria.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <numeric>
#include <random>

#include "nncompress/ir/option_error.h"

namespace nnc {
namespace {

bool isWeightMember(const GroupMember& m) {
  if (m.role != MemberRole::kProducer && m.role != MemberRole::kConsumer) return false;
  const Tensor* t = m.value->constantData();
  return t && t->dtype() == DType::kFloat32;
}

// The slice of member `m` that belongs to each group channel, flattened (all the member indices
// the channel maps to, in order).
// Visits the same elements in the same order without copying them: fn(c, row, length) per
// contiguous row of channel c's slice.
template <typename Fn>
void forEachSliceRow(const GroupMember& m, int64_t channels, Fn fn) {
  const Tensor& t = *m.value->constantData();
  const auto data = t.data<float>();
  const Shape& s = t.shape();
  int64_t outer = 1, inner = 1;
  for (int a = 0; a < m.axis; ++a) outer *= s[a];
  for (int a = m.axis + 1; a < t.rank(); ++a) inner *= s[a];
  const int64_t extent = s[m.axis];
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t idx : m.mapping.indices({c}))
      for (int64_t o = 0; o < outer; ++o) fn(c, data.data() + (o * extent + idx) * inner, inner);
}

std::vector<std::vector<float>> memberSlices(const GroupMember& m, int64_t channels) {
  std::vector<std::vector<float>> out(channels);
  forEachSliceRow(m, channels, [&](int64_t c, const float* row, int64_t length) {
    out[c].insert(out[c].end(), row, row + length);
  });
  return out;
}

void addNormalisedByMean(std::vector<double>& total, const std::vector<double>& member) {
  const double mean =
      std::accumulate(member.begin(), member.end(), 0.0) / std::max<size_t>(1, member.size());
  for (size_t c = 0; c < total.size(); ++c) total[c] += mean > 0 ? member[c] / mean : 0.0;
}

// Min-max normalisation to [0, 1] (all zeros when constant).
std::vector<double> minMax(const std::vector<double>& v) {
  if (v.empty()) return v;
  const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  std::vector<double> out(v.size(), 0.0);
  if (*hi > *lo)
    for (size_t i = 0; i < v.size(); ++i) out[i] = (v[i] - *lo) / (*hi - *lo);
  return out;
}

// Per-unit vectors of the whole group: each weight member's slices divided by that member's
// Frobenius norm (so every layer counts equally), concatenated.
std::vector<std::vector<double>> unitVectors(const ChannelGroup& g) {
  std::vector<std::vector<double>> v(g.channels);
  for (const GroupMember& m : g.members) {
    if (!isWeightMember(m)) continue;
    const auto slices = memberSlices(m, g.channels);
    double norm = 0;
    for (const auto& s : slices)
      for (float x : s) norm += double(x) * x;
    norm = std::sqrt(norm);
    if (norm <= 0) continue;
    for (int64_t c = 0; c < g.channels; ++c)
      for (float x : slices[c]) v[c].push_back(x / norm);
  }
  return v;
}

double distance(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d += (a[i] - b[i]) * (a[i] - b[i]);
  return std::sqrt(d);
}

// l1 / l2: score_c = sum_members ( sum_{i in slice(c)} |w_i|^p ) ^ (1/p), each member
// normalised by its mean so that a large layer does not drown a small one.
class NormCriterion : public Criterion {
 public:
  explicit NormCriterion(int p) : p_(p) {}
  std::string name() const override { return p_ == 1 ? "l1" : "l2"; }
  StatusOr<std::vector<double>> score(const ChannelGroup& g) override {
    std::vector<double> total(g.channels, 0.0);
    for (const GroupMember& m : g.members) {
      if (!isWeightMember(m)) continue;
      std::vector<double> member(g.channels, 0.0);
      forEachSliceRow(m, g.channels, [&](int64_t c, const float* row, int64_t length) {
        double sum = member[c];  // one running sum per channel, in element order
        for (int64_t i = 0; i < length; ++i)
          sum += p_ == 1 ? std::abs(row[i]) : double(row[i]) * row[i];
        member[c] = sum;
      });
      if (p_ == 2)
        for (double& v : member) v = std::sqrt(v);
      addNormalisedByMean(total, member);
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

// bn-gamma: score_c = sum over the group's BatchNormalizations of |gamma_c| / mean |gamma|.
// Whether per-channel statistics of a consumer's input (taken along axis 1) line up with the
// consumer weight's channel axis: not for a grouped Conv (it reads local channel j of every
// group) nor for a MatMul on tokens (channels on the last axis of an N-D input).
bool statsLineUp(const GroupMember& m) {
  if (m.node->isOp("Conv") && m.node->intAttr("group", 1) != 1) return false;
  const Value* x = m.node->input(0);
  if (m.node->isOp("MatMul") && (!x || !x->type().shape || x->type().shape->size() != 2))
    return false;
  return true;
}

// Groups without a BatchNormalization fall back to l2.
class BnGammaCriterion : public Criterion {
 public:
  std::string name() const override { return "bn-gamma"; }
  StatusOr<std::vector<double>> score(const ChannelGroup& g) override {
    std::vector<double> total(g.channels, 0.0);
    bool found = false;
    for (const GroupMember& m : g.members) {
      if (m.role != MemberRole::kParameter || !m.node || !m.node->isOp("BatchNormalization") ||
          m.node->input(1) != m.value)
        continue;
      const Tensor* t = m.value->constantData();
      if (!t || t->dtype() != DType::kFloat32) continue;
      std::vector<double> member(g.channels, 0.0);
      for (int64_t c = 0; c < g.channels; ++c)
        for (int64_t idx : m.mapping.indices({c})) member[c] += std::abs(t->data<float>()[idx]);
      addNormalisedByMean(total, member);
      found = true;
    }
    if (!found) return NormCriterion(2).score(g);
    return total;
  }
};

// fpgm: score_j = sum_k ||v_j - v_k||_2 over the group's unit vectors (unitVectors): a unit close
// to the geometric median of its group is replaceable by the others.
class FpgmCriterion : public Criterion {
 public:
  std::string name() const override { return "fpgm"; }
  StatusOr<std::vector<double>> score(const ChannelGroup& g) override {
    const auto v = unitVectors(g);
    std::vector<double> s(g.channels, 0.0);
    for (int64_t j = 0; j < g.channels; ++j)
      for (int64_t k = j + 1; k < g.channels; ++k) {
        const double d = distance(v[j], v[k]);
        s[j] += d, s[k] += d;
      }
    return s;
  }
};

const TensorStats* statsFor(const FeatureStats* stats, const Value* v) {
  return stats ? stats->find(v) : nullptr;
}

// similarity-chain (METHODS.md method 2). The full clip order is computed once per group; as
// each step only depends on the previous one, removing the k lowest scores is exactly "clip the
// first k units of the chain" for every k. score_j = position of j in the chain.
class SimilarityChainCriterion : public Criterion {
 public:
  explicit SimilarityChainCriterion(const CriterionOptions& o) : options_(o) {}
  std::string name() const override { return "similarity-chain"; }
  StatusOr<std::vector<double>> score(const ChannelGroup& g) override {
    NNC_ASSIGN_OR_RETURN(auto importance_criterion,
                         makeCriterion(options_.chain_importance, options_));
    NNC_ASSIGN_OR_RETURN(std::vector<double> importance, importance_criterion->score(g));
    NNC_ASSIGN_OR_RETURN(std::vector<double> d,
                         unitDistances(g, options_.chain_distance, options_.stats));
    const std::vector<int64_t> order = similarityChainOrder(importance, d);
    std::vector<double> s(g.channels);
    for (size_t t = 0; t < order.size(); ++t) s[order[t]] = static_cast<double>(t);
    GroupMemo& memo = memo_[g.id];
    memo.distance = std::move(d);
    memo.rms.assign(g.channels, 1.0);
    if (auto src = groupFeatureSource(g))
      if (const TensorStats* ts = statsFor(options_.stats, src->value))
        for (int64_t c = 0; c < g.channels; ++c)
          memo.rms[c] = std::sqrt(std::max(0.0, ts->energy(src->channel[c])));
    return s;
  }

  // Merge: for each removed unit r, its nearest kept twin t = argmin_t D(r, t) receives
  // W_next[:, t] += s * W_next[:, r] in every consumer, s = rms(a_r) / rms(a_t) from the
  // calibration maps (1 without data): if a_r ~ s a_t, the consumers' output is kept.
  StatusOr<std::vector<MergeRecord>> mergeRemoved(const ChannelAnalysis& analysis,
                                                  const std::vector<GroupKeep>& plan) override {
    std::vector<MergeRecord> records;
    for (const GroupKeep& k : plan) {
      const ChannelGroup* g = nullptr;
      for (const ChannelGroup& cand : analysis.groups)
        if (cand.id == k.group_id) g = &cand;
      auto memo = memo_.find(k.group_id);
      if (!g || memo == memo_.end() || k.keep.empty()) continue;
      std::vector<bool> kept(g->channels, false);
      for (int64_t c : k.keep) kept[c] = true;
      const auto& d = memo->second.distance;
      const auto& rms = memo->second.rms;
      for (int64_t r = 0; r < g->channels; ++r) {
        if (kept[r]) continue;
        int64_t twin = k.keep.front();
        for (int64_t t : k.keep)
          if (d[r * g->channels + t] < d[r * g->channels + twin]) twin = t;
        const double scale = rms[twin] > 0 ? rms[r] / rms[twin] : 1.0;
        records.push_back({g->id, r, twin, scale});
      }
      for (const GroupMember& m : g->members) {
        if (m.role != MemberRole::kConsumer) continue;
        Tensor* w = const_cast<Value*>(m.value)->mutableInitializer();
        if (!w || w->dtype() != DType::kFloat32)
          return unsupported("merging pruned channels: consumer weight '" + m.value->name() +
                             "' is not a float initializer");
        const Shape s = w->shape();
        int64_t outer = 1, inner = 1;
        for (int a = 0; a < m.axis; ++a) outer *= s[a];
        for (int a = m.axis + 1; a < w->rank(); ++a) inner *= s[a];
        auto data = w->mutableData<float>();
        for (const MergeRecord& rec : records) {
          if (rec.group_id != g->id) continue;
          const auto from = m.mapping.indices({rec.removed});
          const auto into = m.mapping.indices({rec.into});
          // A channel moved by a shuffle and slice may be in this member without its partner.
          for (size_t i = 0; i < std::min(from.size(), into.size()); ++i)
            for (int64_t o = 0; o < outer; ++o) {
              const float* src = data.data() + (o * s[m.axis] + from[i]) * inner;
              float* dst = data.data() + (o * s[m.axis] + into[i]) * inner;
              for (int64_t j = 0; j < inner; ++j) dst[j] += static_cast<float>(rec.scale * src[j]);
            }
        }
      }
    }
    return records;
  }

 private:
  struct GroupMemo {
    std::vector<double> distance;  // C x C
    std::vector<double> rms;       // per unit, of its feature map (1 without data)
  };
  CriterionOptions options_;
  std::map<int, GroupMemo> memo_;
};

// activation (METHODS.md method 4), on the group's feature maps (groupFeatureSource):
//   A_j = E_x std(f_j(x))                    internal feature activeness
//   d_jk = E_x [1 - cos(f_j(x), f_k(x))]     feature difference degree
//   S_j = min_{k != j} d_jk                  substitutability (small: j has a near-twin)
//   importance_j = alpha * minmax(A)_j + (1 - alpha) * minmax(S)_j
class ActivationCriterion : public Criterion {
 public:
  explicit ActivationCriterion(const CriterionOptions& o) : options_(o) {}
  std::string name() const override { return "activation"; }
  StatusOr<std::vector<double>> score(const ChannelGroup& g) override {
    auto src = groupFeatureSource(g);
    // Channels on another axis or tiled by a grouped Conv: no per-channel feature map
    // statistics; weight magnitude instead.
    if (!src) return NormCriterion(2).score(g);
    const TensorStats* ts = statsFor(options_.stats, src->value);
    if (!ts || ts->mean_cosine.empty())
      return invalidArgument("activation: no calibration statistics for '" + src->value->name() +
                             "'");
    const int64_t n = g.channels;
    std::vector<double> a(n), s(n, n > 1 ? std::numeric_limits<double>::infinity() : 0.0);
    for (int64_t j = 0; j < n; ++j) {
      a[j] = ts->mean_std[src->channel[j]];
      for (int64_t k = 0; k < n; ++k)
        if (k != j) s[j] = std::min(s[j], 1.0 - ts->cosine(src->channel[j], src->channel[k]));
    }
    const auto na = minMax(a), ns = minMax(s);
    std::vector<double> out(n);
    for (int64_t j = 0; j < n; ++j) out[j] = options_.alpha * na[j] + (1 - options_.alpha) * ns[j];
    return out;
  }

 private:
  CriterionOptions options_;
};

// contribution (METHODS.md method 3 step 1): c_u = E_x ||W_next[:, u] * a_u(x)||^2, the energy
// unit u puts into each next linear layer's output, summed over the group's consumers (each
// consumer's vector divided by its mean, so every consumer layer counts equally).
// For a Conv consumer (group 1) with weight W[o, i, ky, kx], strides (sh, sw), dilations
// (dh, dw), and input channel i carrying unit u, the output part due to u is
//   y_o(p) = sum_k W[o, i, k] a_i(s p + k dil - pad)
// so  ||y(x)||^2 = sum_o sum_{k, k'} W[o,i,k] W[o,i,k'] sum_p a_i(s p + k dil) a_i(s p + k' dil)
// and with R_i(d) = E_x sum_q a_i(q) a_i(q + d) (the map's autocorrelation, zero outside):
//   c_u = 1/(sh sw) * sum_o sum_{k, k'} W[o,i,k] W[o,i,k'] R_i((k' - k) dil)
// This is exact for 1x1 stride-1 convolutions; for kxk it is exact up to the terms at the map
// border (zero padding) and, with stride s, takes every s-th position as average. The diagonal
// (k = k') alone would be "sum of squared weights times E||a_i||^2"; the cross terms matter for
// smooth maps. For Gemm/MatMul (and other) consumers each input feature f of u contributes
// sum_o W[o, f]^2 * E[a_f^2]: exact when u is one feature (GlobalAveragePool), and without the
// cross terms between the features of one channel after a Flatten.
class ContributionCriterion : public Criterion {
 public:
  explicit ContributionCriterion(const CriterionOptions& o) : options_(o) {}
  std::string name() const override { return "contribution"; }
  StatusOr<std::vector<double>> score(const ChannelGroup& g) override {
    std::vector<double> total(g.channels, 0.0);
    bool any = false;
    for (const GroupMember& m : g.members) {
      if (!isWeightMember(m) || m.role != MemberRole::kConsumer || !m.node) continue;
      if (!statsLineUp(m)) continue;
      const Value* x = m.node->input(0);
      const TensorStats* ts = statsFor(options_.stats, x);
      if (!ts)
        return invalidArgument("contribution: no calibration statistics for '" +
                               (x ? x->name() : std::string("?")) + "'");
      const Tensor& w = *m.value->constantData();
      if (ts->channels != w.dim(m.axis))
        return unsupported("contribution: consumer '" + m.node->name() +
                           "' reads a tensor whose channels do not match its weight");
      std::vector<double> member(g.channels, 0.0);
      const bool conv =
          m.node->isOp("Conv") && w.rank() == 4 && m.axis == 1 && m.node->intAttr("group", 1) == 1;
      if (conv) {
        const int64_t o_count = w.dim(0), kh = w.dim(2), kw = w.dim(3), i_count = w.dim(1);
        const auto st = m.node->intsAttr("strides", {1, 1});
        const auto dil = m.node->intsAttr("dilations", {1, 1});
        const double stride_div = double(st.size() > 0 ? st[0] : 1) * (st.size() > 1 ? st[1] : 1);
        const int64_t dh = dil.size() > 0 ? dil[0] : 1, dw = dil.size() > 1 ? dil[1] : 1;
        const auto data = w.data<float>();
        for (int64_t u = 0; u < g.channels; ++u)
          for (int64_t i : m.mapping.indices({u})) {
            double acc = 0;
            for (int64_t o = 0; o < o_count; ++o) {
              const float* k = data.data() + (o * i_count + i) * kh * kw;
              for (int64_t a = 0; a < kh * kw; ++a)
                for (int64_t b = 0; b < kh * kw; ++b)
                  acc += double(k[a]) * k[b] *
                         ts->autocorrAt(i, (b / kw - a / kw) * dh, (b % kw - a % kw) * dw);
            }
            member[u] += acc / stride_div;
          }
      } else {
        const auto slices = memberSlices(m, g.channels);
        for (int64_t u = 0; u < g.channels; ++u) {
          const auto idx = m.mapping.indices({u});
          const size_t per = slices[u].size() / std::max<size_t>(1, idx.size());
          // memberSlices orders a channel's slice index-major: outer rows within each index.
          for (size_t r = 0; r < idx.size(); ++r) {
            double sq = 0;
            for (size_t j = r * per; j < (r + 1) * per; ++j)
              sq += double(slices[u][j]) * slices[u][j];
            member[u] += sq * ts->energy(idx[r]);
          }
        }
      }
      addNormalisedByMean(total, member);
      any = true;
    }
    // Only such consumers read these channels: weight magnitude instead.
    if (!any && std::any_of(g.members.begin(), g.members.end(), [](const GroupMember& m) {
          return m.role == MemberRole::kConsumer && m.node && !statsLineUp(m);
        }))
      return NormCriterion(2).score(g);
    if (!any) return unsupported("contribution: group has no consumer layer with a weight");
    return total;
  }

 private:
  CriterionOptions options_;
};

// taylor (METHODS.md section 7, Molchanov et al. 2019): I_c = E_batches (sum_{n, p} g a)^2 on the
// group's feature map (groupFeatureSource), g = dLoss/da from calibration batches (the
// statistics' `taylor` field; computed above prune, see GradientStatsFn). Groups without such a
// map are scored by their weights' L2 norm (the global order divides by each group's mean).
class TaylorCriterion : public Criterion {
 public:
  explicit TaylorCriterion(const CriterionOptions& o) : options_(o) {}
  std::string name() const override { return "taylor"; }
  StatusOr<std::vector<double>> score(const ChannelGroup& g) override {
    auto src = groupFeatureSource(g);
    // Channels reach no map one-to-one (e.g. only through a Concat, as in DenseNets): no
    // per-channel gradient statistics; weight magnitude instead, as the activation criterion.
    if (!src) return NormCriterion(2).score(g);
    const TensorStats* ts = statsFor(options_.stats, src->value);
    if (!ts || ts->taylor.empty())
      return invalidArgument("taylor: no gradient statistics for '" + src->value->name() + "'");
    std::vector<double> s(g.channels);
    for (int64_t c = 0; c < g.channels; ++c) {
      const int64_t ch = src->channel[c];
      if (ch < 0 || ch >= static_cast<int64_t>(ts->taylor.size()))
        return internalError("taylor: channel " + std::to_string(ch) + " outside '" +
                             src->value->name() + "'");
      s[c] = ts->taylor[ch];
    }
    return s;
  }

 private:
  CriterionOptions options_;
};

std::vector<CriterionInfo>& registry() {
  static std::vector<CriterionInfo> r;
  return r;
}

void registerBuiltins() {
  static std::once_flag once;
  std::call_once(once, [] {
    auto simple = [](std::string name, std::string desc, auto make) {
      CriterionInfo info;
      info.name = std::move(name);
      info.description = std::move(desc);
      info.make = make;
      return info;
    };
    using Made = StatusOr<std::unique_ptr<Criterion>>;
    registry().push_back(simple("l1", "L1 norm of the unit's weights (all layers of the group)",
                                [](const CriterionOptions&) -> Made {
                                  return std::unique_ptr<Criterion>(new NormCriterion(1));
                                }));
    registry().push_back(simple("l2", "L2 norm of the unit's weights (all layers of the group)",
                                [](const CriterionOptions&) -> Made {
                                  return std::unique_ptr<Criterion>(new NormCriterion(2));
                                }));
    registry().push_back(simple("bn-gamma", "|gamma| of the group's BatchNormalizations",
                                [](const CriterionOptions&) -> Made {
                                  return std::unique_ptr<Criterion>(new BnGammaCriterion());
                                }));
    registry().push_back(simple("fpgm", "distance to the other units (geometric median)",
                                [](const CriterionOptions&) -> Made {
                                  return std::unique_ptr<Criterion>(new FpgmCriterion());
                                }));
    registry().push_back(
        simple("random", "random scores (baseline)", [](const CriterionOptions& o) -> Made {
          return std::unique_ptr<Criterion>(new RandomCriterion(o.seed));
        }));
    CriterionInfo chain =
        simple("similarity-chain", "chain of near-duplicates starting at the least important unit",
               [](const CriterionOptions& o) -> Made {
                 return std::unique_ptr<Criterion>(new SimilarityChainCriterion(o));
               });
    registry().push_back(chain);
    CriterionInfo act = simple("activation", "feature-map activeness + substitutability",
                               [](const CriterionOptions& o) -> Made {
                                 return std::unique_ptr<Criterion>(new ActivationCriterion(o));
                               });
    act.needs.cosine = true;
    registry().push_back(act);
    CriterionInfo contrib =
        simple("contribution", "energy put into the next layers' outputs",
               [](const CriterionOptions& o) -> Made {
                 return std::unique_ptr<Criterion>(new ContributionCriterion(o));
               });
    contrib.needs.consumers = true;
    registry().push_back(contrib);
    CriterionInfo taylor = simple("taylor", "first-order loss change |sum g * a| (gradients)",
                                  [](const CriterionOptions& o) -> Made {
                                    return std::unique_ptr<Criterion>(new TaylorCriterion(o));
                                  });
    taylor.needs.gradients = true;
    registry().push_back(taylor);
  });
}

}  // namespace

void registerCriterion(CriterionInfo info) {
  registerBuiltins();
  for (CriterionInfo& existing : registry())
    if (existing.name == info.name) {
      existing = std::move(info);
      return;
    }
  registry().push_back(std::move(info));
}

StatusOr<const CriterionInfo*> findCriterion(const std::string& name) {
  registerBuiltins();
  for (const CriterionInfo& info : registry())
    if (info.name == name) return &info;
  std::string known;
  for (const auto& n : criterionNames()) known += (known.empty() ? "" : ", ") + n;
  return invalidArgument("unknown pruning method '" + name + "' (known: " + known + ")");
}

StatusOr<std::unique_ptr<Criterion>> makeCriterion(const std::string& name,
                                                   const CriterionOptions& options) {
  NNC_ASSIGN_OR_RETURN(const CriterionInfo* info, findCriterion(name));
  return info->make(options);
}

StatusOr<std::unique_ptr<Criterion>> makeCriterion(const std::string& name, uint64_t seed) {
  CriterionOptions o;
  o.seed = seed;
  return makeCriterion(name, o);
}

std::vector<std::string> criterionNames() {
  registerBuiltins();
  std::vector<std::string> names;
  for (const CriterionInfo& info : registry()) names.push_back(info.name);
  return names;
}

StatusOr<std::vector<double>> unitDistances(const ChannelGroup& g, const std::string& kind,
                                            const FeatureStats* stats) {
  const int64_t n = g.channels;
  std::vector<double> d(n * n, 0.0);
  if (kind == "weights") {
    auto v = unitVectors(g);
    for (auto& u : v) {
      double norm = 0;
      for (double x : u) norm += x * x;
      norm = std::sqrt(norm);
      if (norm > 0)
        for (double& x : u) x /= norm;
    }
    for (int64_t j = 0; j < n; ++j)
      for (int64_t k = j + 1; k < n; ++k) d[j * n + k] = d[k * n + j] = distance(v[j], v[k]);
    return d;
  }
  if (kind == "features") {
    auto src = groupFeatureSource(g);
    const TensorStats* ts = src ? statsFor(stats, src->value) : nullptr;
    if (!ts || ts->mean_cosine.empty())
      return invalidOption("calibration",
                           "similarity-chain distance on features needs calibration data");
    for (int64_t j = 0; j < n; ++j)
      for (int64_t k = 0; k < n; ++k)
        if (j != k) d[j * n + k] = 1.0 - ts->cosine(src->channel[j], src->channel[k]);
    return d;
  }
  return invalidArgument("unknown difference degree '" + kind + "' (weights or features)");
}

std::vector<int64_t> similarityChainOrder(const std::vector<double>& importance,
                                          const std::vector<double>& distance) {
  const int64_t n = static_cast<int64_t>(importance.size());
  std::vector<int64_t> order;
  if (n == 0) return order;
  std::vector<bool> clipped(n, false);
  int64_t cur = std::min_element(importance.begin(), importance.end()) - importance.begin();
  order.push_back(cur);
  clipped[cur] = true;
  while (static_cast<int64_t>(order.size()) < n) {
    int64_t best = -1;
    for (int64_t j = 0; j < n; ++j)
      if (!clipped[j] && (best < 0 || distance[cur * n + j] < distance[cur * n + best])) best = j;
    cur = best;
    order.push_back(cur);
    clipped[cur] = true;
  }
  return order;
}

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

// Keep counts per cell proportional to the cell sizes (largest remainder), at least one each.
std::vector<int64_t> cellShares(const std::vector<std::vector<int64_t>>& cells, int64_t channels,
                                int64_t keep_count) {
  std::vector<int64_t> share(cells.size());
  std::vector<std::pair<double, size_t>> remainder;
  int64_t given = 0;
  for (size_t i = 0; i < cells.size(); ++i) {
    const double exact = double(keep_count) * cells[i].size() / channels;
    share[i] = std::max<int64_t>(1, static_cast<int64_t>(std::floor(exact)));
    given += share[i];
    remainder.push_back({exact - std::floor(exact), i});
  }
  std::stable_sort(remainder.begin(), remainder.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t r = 0; given < keep_count && r < remainder.size(); ++r) {
    const size_t i = remainder[r].second;
    if (share[i] < static_cast<int64_t>(cells[i].size())) ++share[i], ++given;
  }
  return share;
}

std::vector<int64_t> keepChannels(const ChannelGroup& group, const std::vector<double>& scores,
                                  int64_t keep_count) {
  // Cell of a channel: which partial members hold it.
  std::map<std::vector<bool>, std::vector<int64_t>> by_signature;
  for (int64_t c = 0; c < group.channels; ++c) {
    std::vector<bool> signature;
    for (const GroupMember& m : group.members)
      if (!m.mapping.table.empty()) signature.push_back(m.mapping.table[c] >= 0);
    by_signature[signature].push_back(c);
  }
  if (by_signature.size() < 2 || keep_count < static_cast<int64_t>(by_signature.size()))
    return topChannels(scores, keep_count);
  std::vector<std::vector<int64_t>> cells;
  for (auto& [signature, channels] : by_signature) cells.push_back(std::move(channels));
  const std::vector<int64_t> share = cellShares(cells, group.channels, keep_count);
  std::vector<int64_t> keep;
  for (size_t i = 0; i < cells.size(); ++i) {
    std::vector<double> cell_scores;
    for (int64_t c : cells[i]) cell_scores.push_back(scores[c]);
    for (int64_t j : topChannels(cell_scores, share[i])) keep.push_back(cells[i][j]);
  }
  std::sort(keep.begin(), keep.end());
  return keep;
}

bool groupExcluded(const ChannelGroup& g, const std::vector<std::string>& exclude) {
  for (const Node* n : g.sources)
    for (const std::string& name : exclude)
      if (n->name() == name || (n->output(0) && n->output(0)->name() == name)) return true;
  return false;
}

StatusOr<std::vector<GroupKeep>> planUniformPruning(const ChannelAnalysis& analysis,
                                                    Criterion& criterion,
                                                    const UniformPlanOptions& options) {
  if (!(options.ratio >= 0.0 && options.ratio < 1.0))
    return invalidOption(
        "ratio", "the pruning ratio must be in [0, 1), got " + std::to_string(options.ratio));
  if (options.round_to < 1)
    return invalidOption("round_to", "channel counts must round to a multiple of at least 1");
  std::vector<GroupKeep> plan;
  for (const ChannelGroup& g : analysis.groups) {
    if (!g.prunable || groupExcluded(g, options.exclude) || (options.exact_only && g.approximate))
      continue;
    int64_t keep = g.channels - static_cast<int64_t>(std::floor(g.channels * options.ratio));
    if (options.round_to > 1) {
      keep = (keep + options.round_to / 2) / options.round_to * options.round_to;
      keep = std::clamp<int64_t>(keep, std::min(options.round_to, g.channels), g.channels);
    }
    keep = std::max<int64_t>(1, keep);
    if (keep >= g.channels) continue;
    NNC_ASSIGN_OR_RETURN(std::vector<double> scores, criterion.score(g));
    plan.push_back({g.id, keepChannels(g, scores, keep)});
  }
  return plan;
}

}  // namespace nnc
