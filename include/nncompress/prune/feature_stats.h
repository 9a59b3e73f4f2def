#pragma once
// Calibration statistics of feature maps for the data-driven pruning criteria (METHODS.md,
// methods 2, 3 step 1 and 4), accumulated in streaming form over batches through executor
// observers: memory depends on the channel counts and map sizes, never on the sample count.
//
// Per observed tensor X of shape [N, C, H, W] (or [N, C], read as H = W = 1), per channel c and
// sample x with flattened map f_c(x):
//   mean_std[c]     = E_x std(f_c(x))                       (population std over the map)
//   mean_abs[c]     = E_x mean |f_c(x)|
//   autocorr[c][d]  = E_x sum_q f_c(x)[q] f_c(x)[q + d]     (|dy| <= radius_h, |dx| <= radius_w;
//                                                            zero outside the map)
//   mean_cosine[j,k]= E_x cos(f_j(x), f_k(x))  from the per-sample Gram matrix F F^T; a map that
//                     is all zero for a sample counts as cos = 1 (it carries nothing, so anything
//                     substitutes it)
// Which tensor a group's maps come from: the input of the group's first consumer layer, i.e.
// the activation after the nonlinearity (and residual Add) that the next layer really reads,
// restricted to the group's channels (Concat offsets applied). When that input sees the
// channels only flattened (Gemm after Flatten), the last un-flattened activation member is used.

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nncompress/analysis/channel_groups.h"
#include "nncompress/prune/recovery.h"

namespace nnc {

struct TensorStatsRequest {
  const Value* value = nullptr;
  int64_t radius_h = 0, radius_w = 0;  // autocorrelation offsets to accumulate
  bool cosine = false;                 // per-sample cosine matrix between channels
};

struct TensorStats {
  int64_t channels = 0, height = 1, width = 1;
  int64_t samples = 0;
  int64_t radius_h = 0, radius_w = 0;
  std::vector<double> mean_std, mean_abs;
  std::vector<double> autocorr;     // [C][2 radius_h + 1][2 radius_w + 1], offset (0,0) centred
  std::vector<double> mean_cosine;  // [C * C], empty unless requested
  // Taylor importance (METHODS.md section 7): per channel, the mean over batches of
  // (sum over the batch's samples and positions of g * a)^2, g = dLoss/da. Filled by a
  // GradientStatsFn (gradients are computed above prune); empty unless requested.
  std::vector<double> taylor;
  // E_x sum_q f_c(x)[q] f_c(x)[q + (dy, dx)]; 0 outside the accumulated radius.
  double autocorrAt(int64_t c, int64_t dy, int64_t dx) const;
  double energy(int64_t c) const { return autocorrAt(c, 0, 0); }  // E_x ||f_c(x)||^2
  double cosine(int64_t j, int64_t k) const { return mean_cosine[j * channels + k]; }
};

class FeatureStats {
 public:
  const TensorStats* find(const Value* value) const {
    auto it = by_value_.find(value);
    return it == by_value_.end() ? nullptr : &it->second;
  }
  std::map<const Value*, TensorStats>& mutableStats() { return by_value_; }

 private:
  std::map<const Value*, TensorStats> by_value_;
};

// The tensor whose channels are a group's feature maps, and the channel of that tensor for each
// group channel. nullopt when no activation member carries the channels one-to-one.
struct GroupFeatureSource {
  const Value* value = nullptr;
  std::vector<int64_t> channel;  // channel[c]: index into value's channel axis
};
std::optional<GroupFeatureSource> groupFeatureSource(const ChannelGroup& group);

struct StatsNeeds {
  bool cosine = false;     // group feature maps' cosine matrix (activation, chain on features)
  bool consumers = false;  // consumer inputs' autocorrelation (contribution)
  bool gradients = false;  // Taylor terms of the group feature maps (taylor)
};

// Fills TensorStats::taylor (and channels) in `stats` for every value of `values` (group feature
// maps of `model`), from calibration batches. Gradients need the train module, which sits above
// prune, so the caller (pipeline, cli) supplies this.
using GradientStatsFn =
    std::function<Status(const Model& model, const std::vector<const Value*>& values,
                         const CalibrationSource& calibration, FeatureStats& stats)>;

// What to observe for the prunable groups of `analysis` (merged per tensor).
std::vector<TensorStatsRequest> statsRequestsFor(const ChannelAnalysis& analysis,
                                                 const StatsNeeds& needs);

// Runs `model` over the calibration samples and accumulates the requested statistics. The values
// in `requests` must belong to `model`. `progress(done, total)` is called after each batch.
StatusOr<FeatureStats> collectFeatureStats(
    const Model& model, const std::vector<TensorStatsRequest>& requests,
    const CalibrationSource& calibration,
    const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace nnc
