#include "nncompress/prune/allocation.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "nncompress/analysis/model_stats.h"
#include "nncompress/exec/executor.h"
#include "nncompress/ir/option_error.h"

namespace nnc {
namespace {

struct Scored {
  const ChannelGroup* group;
  std::vector<double> scores;
  int64_t min_keep;
};

using KeepCounts = std::vector<int64_t>;  // per Scored entry

std::vector<GroupKeep> planFor(const std::vector<Scored>& groups, const KeepCounts& keep) {
  std::vector<GroupKeep> plan;
  for (size_t i = 0; i < groups.size(); ++i)
    if (keep[i] < groups[i].group->channels)
      plan.push_back(
          {groups[i].group->id, keepChannels(*groups[i].group, groups[i].scores, keep[i])});
  return plan;
}

// Relative output error of `model` against stored reference outputs.
class FidelityProbe {
 public:
  static StatusOr<FidelityProbe> create(const Model& original, const CalibrationSource& calib,
                                        int64_t samples) {
    FidelityProbe p;
    p.calib_ = calib;
    p.calib_.count = std::min({samples, calib.count, calib.reader->size()});
    NNC_RETURN_IF_ERROR(p.forEachOutput(original, [&](int64_t, const float* y, int64_t n) {
      p.reference_.insert(p.reference_.end(), y, y + n);
      for (int64_t i = 0; i < n; ++i) p.reference_energy_ += double(y[i]) * y[i];
    }));
    return p;
  }
  StatusOr<double> loss(const Model& model) {
    double err = 0;
    NNC_RETURN_IF_ERROR(forEachOutput(model, [&](int64_t offset, const float* y, int64_t n) {
      for (int64_t i = 0; i < n; ++i) {
        const double d = double(y[i]) - reference_[offset + i];
        err += d * d;
      }
    }));
    return reference_energy_ > 0 ? err / reference_energy_ : err;
  }

 private:
  template <typename Sink>
  Status forEachOutput(const Model& model, Sink sink) {
    exec::ExecutorOptions eo;
    eo.num_threads = calib_.num_threads;
    NNC_ASSIGN_OR_RETURN(auto ex, exec::Executor::create(model, eo));
    int64_t offset = 0;
    const int64_t batch = std::max<int64_t>(1, calib_.batch);
    for (int64_t start = 0; start < calib_.count; start += batch) {
      const int64_t count = std::min(batch, calib_.count - start);
      NNC_ASSIGN_OR_RETURN(Tensor input, calib_.reader->readBatch(start, count));
      std::vector<Tensor> inputs;
      inputs.push_back(std::move(input));
      NNC_ASSIGN_OR_RETURN(std::vector<Tensor> out, ex->run(std::move(inputs)));
      if (out.empty() || out[0].dtype() != DType::kFloat32)
        return unsupported("sensitivity needs a float first output");
      const auto y = out[0].data<float>();
      sink(offset, y.data(), static_cast<int64_t>(y.size()));
      offset += static_cast<int64_t>(y.size());
    }
    return Status::ok();
  }
  CalibrationSource calib_;
  std::vector<float> reference_;
  double reference_energy_ = 0;
};

// Largest ratio r <= last measured whose interpolated (monotone) loss is <= tau.
double ratioForLoss(const std::vector<SensitivityPoint>& points, double tau) {
  double r0 = 0, l0 = 0;
  for (const SensitivityPoint& p : points) {
    const double l1 = std::max(l0, p.loss);
    if (l1 > tau) return l1 > l0 ? r0 + (tau - l0) / (l1 - l0) * (p.ratio - r0) : r0;
    r0 = p.ratio, l0 = l1;
  }
  return r0;
}

// The monotone, linearly interpolated loss curve at ratio r (0 at r = 0).
double lossAt(const std::vector<SensitivityPoint>& points, double r) {
  double r0 = 0, l0 = 0;
  for (const SensitivityPoint& p : points) {
    const double l1 = std::max(l0, p.loss);
    if (r <= p.ratio) return p.ratio > r0 ? l0 + (r - r0) / (p.ratio - r0) * (l1 - l0) : l1;
    r0 = p.ratio, l0 = l1;
  }
  return l0;
}

}  // namespace

StatusOr<AllocationMode> parseAllocationMode(const std::string& name) {
  if (name == "uniform") return AllocationMode::kUniform;
  if (name == "global") return AllocationMode::kGlobal;
  if (name == "sensitivity") return AllocationMode::kSensitivity;
  return invalidOption("allocation",
                       "unknown allocation mode '" + name + "' (uniform, global, sensitivity)");
}

int64_t roundKeep(int64_t keep, int64_t channels, int64_t round_to) {
  if (round_to > 1) {
    keep = (keep + round_to / 2) / round_to * round_to;
    keep = std::clamp<int64_t>(keep, std::min(round_to, channels), channels);
  }
  return std::clamp<int64_t>(keep, 1, channels);
}

std::pair<int64_t, int64_t> paramsAndMacsAfter(const Model& model, const ChannelAnalysis& analysis,
                                               const std::vector<GroupKeep>& plan) {
  const PlanCost cost = planCost(model, analysis, plan);
  return {cost.params, cost.macs};
}

StatusOr<AllocationResult> allocateChannels(const Model& model, const ChannelAnalysis& analysis,
                                            Criterion& criterion, const AllocationOptions& o,
                                            const CalibrationSource* calibration) {
  const int targets = o.ratio.has_value() + o.target_macs.has_value() + o.target_params.has_value();
  if (targets != 1)
    return invalidOption("ratio",
                         "give exactly one target: a pruning ratio, a MACs target or a parameter "
                         "target");
  if (o.ratio && !(*o.ratio >= 0 && *o.ratio < 1))
    return invalidOption("ratio",
                         "the pruning ratio must be in [0, 1), got " + std::to_string(*o.ratio));
  for (const auto& [t, option] :
       {std::pair{o.target_macs, "target_macs"}, std::pair{o.target_params, "target_params"}})
    if (t && !(*t > 0 && *t <= 1))
      return invalidOption(
          option,
          "the MACs or parameter target must be a fraction in (0, 1], got " + std::to_string(*t));
  if (o.round_to < 1)
    return invalidOption("round_to", "channel counts must round to a multiple of at least 1");
  if (!(o.floor >= 0 && o.floor < 1))
    return invalidOption("floor", "the kept-channel floor must be a fraction in [0, 1)");
  if (o.sensitivity_rule != "cost" && o.sensitivity_rule != "threshold")
    return invalidOption("sensitivity_rule",
                         "unknown sensitivity rule '" + o.sensitivity_rule + "' (cost, threshold)");
  if (o.mode == AllocationMode::kSensitivity && (!calibration || !calibration->reader))
    return invalidOption("calibration", "sensitivity allocation needs calibration data");
  auto log = [&](const std::string& line) {
    if (o.log) o.log(line);
  };

  AllocationResult result;
  const ModelStats before = computeModelStats(*model.graph);
  result.params_before = before.params;
  result.macs_before = before.macs;

  std::vector<Scored> groups;
  int64_t total_channels = 0;
  for (const ChannelGroup& g : analysis.groups) {
    if (!g.prunable || g.channels < 2 || groupExcluded(g, o.exclude) ||
        (o.exact_only && g.approximate))
      continue;
    NNC_ASSIGN_OR_RETURN(std::vector<double> scores, criterion.score(g));
    result.scores[g.id] = scores;
    // With an explicit uniform --ratio the floor is one channel (the ratio is the user's).
    const double floor = (o.mode == AllocationMode::kUniform && o.ratio) ? 0.0 : o.floor;
    int64_t min_keep = std::max<int64_t>(1, std::ceil(floor * g.channels - 1e-9));
    if (auto it = o.min_keep.find(g.id); it != o.min_keep.end())
      min_keep = std::min(g.channels, std::max(min_keep, it->second));
    groups.push_back({&g, std::move(scores), min_keep});
    total_channels += g.channels;
  }

  auto uniformKeeps = [&](double r) {
    KeepCounts k;
    for (const Scored& s : groups) {
      int64_t keep = s.group->channels - static_cast<int64_t>(std::floor(s.group->channels * r));
      keep = std::max(keep, s.min_keep);
      k.push_back(roundKeep(keep, s.group->channels, o.round_to));
    }
    return k;
  };

  // Global order: channels by score / group mean, lowest first, never past a group's floor.
  std::vector<std::pair<size_t, int64_t>> global_order;
  if (o.mode == AllocationMode::kGlobal) {
    std::vector<std::tuple<double, size_t, int64_t>> all;
    for (size_t i = 0; i < groups.size(); ++i) {
      const auto& sc = groups[i].scores;
      const double mean = std::accumulate(sc.begin(), sc.end(), 0.0) / sc.size();
      for (size_t c = 0; c < sc.size(); ++c)
        all.emplace_back(mean > 0 ? sc[c] / mean : sc[c], i, static_cast<int64_t>(c));
    }
    std::stable_sort(all.begin(), all.end());
    std::vector<int64_t> removed(groups.size(), 0);
    for (const auto& [s, i, c] : all)
      if (groups[i].group->channels - removed[i] > groups[i].min_keep) {
        ++removed[i];
        global_order.emplace_back(i, c);
      }
  }
  auto globalKeeps = [&](int64_t n) {
    KeepCounts k;
    std::vector<int64_t> removed(groups.size(), 0);
    for (int64_t j = 0; j < n && j < static_cast<int64_t>(global_order.size()); ++j)
      ++removed[global_order[j].first];
    for (size_t i = 0; i < groups.size(); ++i)
      k.push_back(
          roundKeep(groups[i].group->channels - removed[i], groups[i].group->channels, o.round_to));
    return k;
  };

  // Sensitivity curves.
  double max_loss = 0;
  if (o.mode == AllocationMode::kSensitivity) {
    NNC_ASSIGN_OR_RETURN(FidelityProbe probe,
                         FidelityProbe::create(model, *calibration, o.sensitivity_samples));
    for (size_t i = 0; i < groups.size(); ++i) {
      const Scored& s = groups[i];
      std::vector<SensitivityPoint> curve;
      int64_t previous_keep = s.group->channels;
      for (double r : o.sensitivity_ratios) {
        const int64_t c = s.group->channels;
        const int64_t keep = roundKeep(
            std::max(s.min_keep, c - static_cast<int64_t>(std::floor(c * r))), c, o.round_to);
        if (keep >= previous_keep) continue;
        previous_keep = keep;
        const double actual = double(c - keep) / c;
        Model trial = model.clone();
        const ChannelAnalysis ta = analyzeChannels(trial);
        NNC_RETURN_IF_ERROR(applyChannelPruning(
            trial, ta, {{s.group->id, keepChannels(*s.group, s.scores, keep)}}));
        NNC_ASSIGN_OR_RETURN(double loss, probe.loss(trial));
        curve.push_back({actual, loss});
        max_loss = std::max(max_loss, loss);
      }
      std::string line = "sensitivity group " + std::to_string(s.group->id) + ":";
      for (const auto& p : curve) {
        char buf[64];
        std::snprintf(buf, sizeof buf, " %.2f->%.4g", p.ratio, p.loss);
        line += buf;
      }
      log(line + " (" + std::to_string(i + 1) + "/" + std::to_string(groups.size()) + ")");
      result.sensitivity[s.group->id] = std::move(curve);
    }
  }
  // Cost-aware rule: maximise lambda * share_g * r - loss_g(r) per group (a Lagrangian
  // relaxation of "least total loss for the target"), share_g = the group's share of the MACs
  // (params, channels) that the target counts; lambda searched log-uniformly.
  double share_total = 0;
  for (const Scored& s : groups)
    share_total += o.target_macs     ? s.group->macs
                   : o.target_params ? s.group->params
                                     : s.group->channels;
  auto costKeeps = [&](double t) {
    KeepCounts k;
    const double lambda = t >= 1 ? 1e300 : std::pow(10.0, -4 + 8 * t);
    for (const Scored& s : groups) {
      const auto& curve = result.sensitivity[s.group->id];
      const int64_t c = s.group->channels;
      const double share = (o.target_macs     ? s.group->macs
                            : o.target_params ? s.group->params
                                              : c) /
                           std::max(1.0, share_total);
      const double r_max = curve.empty() ? 0.0 : curve.back().ratio;
      int64_t best_k = 0;
      double best = 0;
      for (int64_t removed = 1; removed <= static_cast<int64_t>(std::floor(c * r_max + 1e-9));
           ++removed) {
        const double r = double(removed) / c;
        const double value = t >= 1 ? r : lambda * share * r - lossAt(curve, r);
        if (value > best) best = value, best_k = removed;
      }
      k.push_back(roundKeep(std::max(s.min_keep, c - best_k), c, o.round_to));
    }
    return k;
  };
  auto sensitivityKeeps = [&](double tau) {
    KeepCounts k;
    for (const Scored& s : groups) {
      const double r = ratioForLoss(result.sensitivity[s.group->id], tau);
      const int64_t c = s.group->channels;
      int64_t keep = std::max(s.min_keep, c - static_cast<int64_t>(std::floor(c * r + 1e-9)));
      k.push_back(roundKeep(keep, c, o.round_to));
    }
    return k;
  };

  // keeps(t) removes more as t in [0, 1] grows.
  auto keepsAt = [&](double t) -> KeepCounts {
    switch (o.mode) {
      case AllocationMode::kUniform:
        return uniformKeeps(std::min(t, 0.999));
      case AllocationMode::kGlobal:
        return globalKeeps(std::llround(t * global_order.size()));
      case AllocationMode::kSensitivity:
        return o.sensitivity_rule == "threshold" ? sensitivityKeeps(t * max_loss * 1.0001)
                                                 : costKeeps(t);
    }
    return {};
  };

  // Does a plan meet the target? Channel-count targets need no surgery.
  std::map<KeepCounts, std::pair<int64_t, int64_t>> measured;
  auto measure = [&](const KeepCounts& k) -> StatusOr<std::pair<int64_t, int64_t>> {
    auto it = measured.find(k);
    if (it != measured.end()) return it->second;
    const auto pm = paramsAndMacsAfter(model, analysis, planFor(groups, k));
    measured[k] = pm;
    return pm;
  };
  auto meets = [&](const KeepCounts& k) -> StatusOr<bool> {
    if (o.ratio) {
      const int64_t kept = std::accumulate(k.begin(), k.end(), int64_t{0});
      return kept <= std::llround((1.0 - *o.ratio) * total_channels);
    }
    NNC_ASSIGN_OR_RETURN(auto pm, measure(k));
    if (o.target_macs) return pm.second <= *o.target_macs * result.macs_before;
    return pm.first <= *o.target_params * result.params_before;
  };

  KeepCounts chosen;
  if (o.mode == AllocationMode::kUniform && o.ratio) {
    chosen = uniformKeeps(*o.ratio);
    result.uniform_ratio = *o.ratio;
  } else {
    NNC_ASSIGN_OR_RETURN(bool ok0, meets(keepsAt(0)));
    if (ok0) {
      chosen = keepsAt(0);
    } else {
      NNC_ASSIGN_OR_RETURN(bool ok1, meets(keepsAt(1)));
      double lo = 0, hi = 1;
      if (!ok1) {
        result.target_met = false;
        lo = hi;
      }
      for (int iter = 0; iter < 40 && ok1; ++iter) {
        const double mid = 0.5 * (lo + hi);
        NNC_ASSIGN_OR_RETURN(bool ok, meets(keepsAt(mid)));
        (ok ? hi : lo) = mid;
        if (keepsAt(lo) == keepsAt(hi)) break;
      }
      chosen = keepsAt(hi);
      if (o.mode == AllocationMode::kUniform) result.uniform_ratio = hi;
      log("allocation: searched to t=" + std::to_string(hi));
    }
  }
  result.plan = planFor(groups, chosen);
  NNC_ASSIGN_OR_RETURN(auto pm, measure(chosen));
  result.params_after = pm.first;
  result.macs_after = pm.second;
  return result;
}

}  // namespace nnc
