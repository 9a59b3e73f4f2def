#include "nncompress/prune/allocation.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "nncompress/analysis/fidelity_taps.h"
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

// Relative output error of `model` against stored reference outputs: the first output, or past a
// NonMaxSuppression the boxes and scores it selects from (fidelity_taps.h).
class FidelityProbe {
 public:
  static StatusOr<FidelityProbe> create(const Model& original, const CalibrationSource& calib,
                                        int64_t samples) {
    FidelityProbe p;
    p.calib_ = calib;
    if (outputsFollowSelection(*original.graph)) p.taps_ = fidelityTaps(*original.graph);
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
      if (offset + n > static_cast<int64_t>(reference_.size())) {
        err = std::numeric_limits<double>::infinity();  // an output changed size: no fidelity
        return;
      }
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
      NNC_ASSIGN_OR_RETURN(std::vector<Tensor> inputs, calib_.reader->readFeeds(start, count));
      NNC_ASSIGN_OR_RETURN(std::vector<Tensor> out, compared(*ex, std::move(inputs)));
      for (const Tensor& t : out) {
        if (t.dtype() != DType::kFloat32)
          return unsupported("sensitivity needs a float first output");
        const auto y = t.data<float>();
        sink(offset, y.data(), static_cast<int64_t>(y.size()));
        offset += static_cast<int64_t>(y.size());
      }
    }
    return Status::ok();
  }
  // The first output, or the taps in order.
  StatusOr<std::vector<Tensor>> compared(exec::Executor& ex, std::vector<Tensor> inputs) {
    if (taps_.empty()) {
      NNC_ASSIGN_OR_RETURN(std::vector<Tensor> out, ex.run(std::move(inputs)));
      if (out.empty()) return unsupported("sensitivity needs a float first output");
      return std::vector<Tensor>{std::move(out[0])};
    }
    return ex.runValues(std::move(inputs), taps_);
  }
  std::vector<std::string> taps_;  // empty: the first graph output
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

namespace {

Status checkAllocationOptions(const AllocationOptions& o, const CalibrationSource* calibration) {
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
  return Status::ok();
}

// The state of one allocation: the scored groups, the mode's ordering or loss curves, and the
// search for the keep counts that just meet the target.
class ChannelAllocator {
 public:
  ChannelAllocator(const Model& model, const ChannelAnalysis& analysis, const AllocationOptions& o)
      : model_(model), analysis_(analysis), o_(o) {
    const ModelStats before = computeModelStats(*model.graph);
    result_.params_before = before.params;
    result_.macs_before = before.macs;
  }

  // Scores the groups the options allow to prune, with each group's floor.
  Status scoreGroups(Criterion& criterion) {
    for (const ChannelGroup& g : analysis_.groups) {
      if (!g.prunable || g.channels < 2 || groupExcluded(g, o_.exclude) ||
          (o_.exact_only && g.approximate))
        continue;
      NNC_ASSIGN_OR_RETURN(std::vector<double> scores, criterion.score(g));
      result_.scores[g.id] = scores;
      // With an explicit uniform --ratio the floor is one channel (the ratio is the user's).
      const double floor = (o_.mode == AllocationMode::kUniform && o_.ratio) ? 0.0 : o_.floor;
      int64_t min_keep = std::max<int64_t>(1, std::ceil(floor * g.channels - 1e-9));
      if (auto it = o_.min_keep.find(g.id); it != o_.min_keep.end())
        min_keep = std::min(g.channels, std::max(min_keep, it->second));
      groups_.push_back({&g, std::move(scores), min_keep});
      total_channels_ += g.channels;
    }
    return Status::ok();
  }

  // Global order: channels by score / group mean, lowest first, never past a group's floor.
  void orderChannelsGlobally() {
    std::vector<std::tuple<double, size_t, int64_t>> all;
    for (size_t i = 0; i < groups_.size(); ++i) {
      const auto& sc = groups_[i].scores;
      const double mean = std::accumulate(sc.begin(), sc.end(), 0.0) / sc.size();
      for (size_t c = 0; c < sc.size(); ++c)
        all.emplace_back(mean > 0 ? sc[c] / mean : sc[c], i, static_cast<int64_t>(c));
    }
    std::stable_sort(all.begin(), all.end());
    std::vector<int64_t> removed(groups_.size(), 0);
    for (const auto& [s, i, c] : all)
      if (groups_[i].group->channels - removed[i] > groups_[i].min_keep) {
        ++removed[i];
        global_order_.emplace_back(i, c);
      }
  }

  // Sensitivity curves: the output loss of pruning each group alone at each ratio.
  Status measureSensitivity(const CalibrationSource& calibration) {
    NNC_ASSIGN_OR_RETURN(FidelityProbe probe,
                         FidelityProbe::create(model_, calibration, o_.sensitivity_samples));
    for (size_t i = 0; i < groups_.size(); ++i) {
      const Scored& s = groups_[i];
      NNC_ASSIGN_OR_RETURN(std::vector<SensitivityPoint> curve, sensitivityCurve(s, probe));
      std::string line = "sensitivity group " + std::to_string(s.group->id) + ":";
      for (const auto& p : curve) {
        char buf[64];
        std::snprintf(buf, sizeof buf, " %.2f->%.4g", p.ratio, p.loss);
        line += buf;
      }
      log(line + " (" + std::to_string(i + 1) + "/" + std::to_string(groups_.size()) + ")");
      result_.sensitivity[s.group->id] = std::move(curve);
    }
    return Status::ok();
  }

  // The keep counts that just meet the target, searched over keepsAt(t).
  Status choose() {
    if (o_.mode == AllocationMode::kUniform && o_.ratio) {
      chosen_ = uniformKeeps(*o_.ratio);
      result_.uniform_ratio = *o_.ratio;
      return Status::ok();
    }
    NNC_ASSIGN_OR_RETURN(bool ok0, meets(keepsAt(0)));
    if (ok0) {
      chosen_ = keepsAt(0);
      return Status::ok();
    }
    NNC_ASSIGN_OR_RETURN(bool ok1, meets(keepsAt(1)));
    double lo = 0, hi = 1;
    if (!ok1) {
      result_.target_met = false;
      lo = hi;
    }
    for (int iter = 0; iter < 40 && ok1; ++iter) {
      const double mid = 0.5 * (lo + hi);
      NNC_ASSIGN_OR_RETURN(bool ok, meets(keepsAt(mid)));
      (ok ? hi : lo) = mid;
      if (keepsAt(lo) == keepsAt(hi)) break;
    }
    chosen_ = keepsAt(hi);
    if (o_.mode == AllocationMode::kUniform) result_.uniform_ratio = hi;
    log("allocation: searched to t=" + std::to_string(hi));
    return Status::ok();
  }

  StatusOr<AllocationResult> finish() {
    result_.plan = planFor(groups_, chosen_);
    NNC_ASSIGN_OR_RETURN(auto pm, measure(chosen_));
    result_.params_after = pm.first;
    result_.macs_after = pm.second;
    return std::move(result_);
  }

 private:
  void log(const std::string& line) const {
    if (o_.log) o_.log(line);
  }

  StatusOr<std::vector<SensitivityPoint>> sensitivityCurve(const Scored& s, FidelityProbe& probe) {
    std::vector<SensitivityPoint> curve;
    int64_t previous_keep = s.group->channels;
    for (double r : o_.sensitivity_ratios) {
      const int64_t c = s.group->channels;
      const int64_t keep = roundKeep(
          std::max(s.min_keep, c - static_cast<int64_t>(std::floor(c * r))), c, o_.round_to);
      if (keep >= previous_keep) continue;
      previous_keep = keep;
      const double actual = double(c - keep) / c;
      Model trial = model_.clone();
      const ChannelAnalysis ta = analyzeChannels(trial);
      NNC_RETURN_IF_ERROR(
          applyChannelPruning(trial, ta, {{s.group->id, keepChannels(*s.group, s.scores, keep)}}));
      NNC_ASSIGN_OR_RETURN(double loss, probe.loss(trial));
      curve.push_back({actual, loss});
      max_loss_ = std::max(max_loss_, loss);
    }
    return curve;
  }

  KeepCounts uniformKeeps(double r) const {
    KeepCounts k;
    for (const Scored& s : groups_) {
      int64_t keep = s.group->channels - static_cast<int64_t>(std::floor(s.group->channels * r));
      keep = std::max(keep, s.min_keep);
      k.push_back(roundKeep(keep, s.group->channels, o_.round_to));
    }
    return k;
  }

  KeepCounts globalKeeps(int64_t n) const {
    KeepCounts k;
    std::vector<int64_t> removed(groups_.size(), 0);
    for (int64_t j = 0; j < n && j < static_cast<int64_t>(global_order_.size()); ++j)
      ++removed[global_order_[j].first];
    for (size_t i = 0; i < groups_.size(); ++i)
      k.push_back(roundKeep(groups_[i].group->channels - removed[i], groups_[i].group->channels,
                            o_.round_to));
    return k;
  }

  // The group's share of the MACs (params, channels) that the target counts.
  double targetShare(const ChannelGroup& g) const {
    return o_.target_macs ? g.macs : o_.target_params ? g.params : g.channels;
  }

  // Cost-aware rule: maximise lambda * share_g * r - loss_g(r) per group (a Lagrangian
  // relaxation of "least total loss for the target"); lambda searched log-uniformly.
  KeepCounts costKeeps(double t) {
    double share_total = 0;
    for (const Scored& s : groups_) share_total += targetShare(*s.group);
    KeepCounts k;
    const double lambda = t >= 1 ? 1e300 : std::pow(10.0, -4 + 8 * t);
    for (const Scored& s : groups_) {
      const auto& curve = result_.sensitivity[s.group->id];
      const int64_t c = s.group->channels;
      const double share = targetShare(*s.group) / std::max(1.0, share_total);
      const double r_max = curve.empty() ? 0.0 : curve.back().ratio;
      int64_t best_k = 0;
      double best = 0;
      for (int64_t removed = 1; removed <= static_cast<int64_t>(std::floor(c * r_max + 1e-9));
           ++removed) {
        const double r = double(removed) / c;
        const double value = t >= 1 ? r : lambda * share * r - lossAt(curve, r);
        if (value > best) best = value, best_k = removed;
      }
      k.push_back(roundKeep(std::max(s.min_keep, c - best_k), c, o_.round_to));
    }
    return k;
  }

  KeepCounts sensitivityKeeps(double tau) {
    KeepCounts k;
    for (const Scored& s : groups_) {
      const double r = ratioForLoss(result_.sensitivity[s.group->id], tau);
      const int64_t c = s.group->channels;
      int64_t keep = std::max(s.min_keep, c - static_cast<int64_t>(std::floor(c * r + 1e-9)));
      k.push_back(roundKeep(keep, c, o_.round_to));
    }
    return k;
  }

  // keeps(t) removes more as t in [0, 1] grows.
  KeepCounts keepsAt(double t) {
    switch (o_.mode) {
      case AllocationMode::kUniform:
        return uniformKeeps(std::min(t, 0.999));
      case AllocationMode::kGlobal:
        return globalKeeps(std::llround(t * global_order_.size()));
      case AllocationMode::kSensitivity:
        return o_.sensitivity_rule == "threshold" ? sensitivityKeeps(t * max_loss_ * 1.0001)
                                                  : costKeeps(t);
    }
    return {};
  }

  StatusOr<std::pair<int64_t, int64_t>> measure(const KeepCounts& k) {
    auto it = measured_.find(k);
    if (it != measured_.end()) return it->second;
    const auto pm = paramsAndMacsAfter(model_, analysis_, planFor(groups_, k));
    measured_[k] = pm;
    return pm;
  }

  // Does a plan meet the target? Channel-count targets need no surgery.
  StatusOr<bool> meets(const KeepCounts& k) {
    if (o_.ratio) {
      const int64_t kept = std::accumulate(k.begin(), k.end(), int64_t{0});
      return kept <= std::llround((1.0 - *o_.ratio) * total_channels_);
    }
    NNC_ASSIGN_OR_RETURN(auto pm, measure(k));
    if (o_.target_macs) return pm.second <= *o_.target_macs * result_.macs_before;
    return pm.first <= *o_.target_params * result_.params_before;
  }

  const Model& model_;
  const ChannelAnalysis& analysis_;
  const AllocationOptions& o_;
  AllocationResult result_;
  std::vector<Scored> groups_;
  int64_t total_channels_ = 0;
  std::vector<std::pair<size_t, int64_t>> global_order_;
  double max_loss_ = 0;
  std::map<KeepCounts, std::pair<int64_t, int64_t>> measured_;
  KeepCounts chosen_;
};

}  // namespace

StatusOr<AllocationResult> allocateChannels(const Model& model, const ChannelAnalysis& analysis,
                                            Criterion& criterion, const AllocationOptions& o,
                                            const CalibrationSource* calibration) {
  NNC_RETURN_IF_ERROR(checkAllocationOptions(o, calibration));
  ChannelAllocator allocator(model, analysis, o);
  NNC_RETURN_IF_ERROR(allocator.scoreGroups(criterion));
  if (o.mode == AllocationMode::kGlobal) allocator.orderChannelsGlobally();
  if (o.mode == AllocationMode::kSensitivity)
    NNC_RETURN_IF_ERROR(allocator.measureSensitivity(*calibration));
  NNC_RETURN_IF_ERROR(allocator.choose());
  return allocator.finish();
}

}  // namespace nnc
