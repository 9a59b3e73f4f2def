#pragma once
// Channel importance criteria, registered by name, and the plan that turns scores into
// keep-lists. A group's score aggregates every weight member of the group (producers and
// consumers), not only its first convolution: a channel is cheap to remove only if all layers it
// feeds agree. Higher scores mean more important; a plan removes the lowest.
//
//   l1, l2            weight norms of the unit's slices (Li et al. 2017)
//   bn-gamma          |gamma| of the BatchNormalizations in the group (network slimming)
//   fpgm              distance to the other units (geometric-median criterion)
//   random            the honest baseline
//   similarity-chain  METHODS.md method 2 (importance start, chain of nearest difference degree)
//   activation        METHODS.md method 4 (activeness + substitutability from feature maps)
//   contribution      METHODS.md method 3 step 1 (energy the unit puts into the next layers)
//   taylor            METHODS.md section 7 (first-order loss change: |sum g * a|, Molchanov 2019)

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nncompress/prune/feature_stats.h"
#include "nncompress/prune/surgery.h"

namespace nnc {

struct CriterionOptions {
  uint64_t seed = 0;                       // random
  double alpha = 0.5;                      // activation: weight of activeness vs substitutability
  std::string chain_importance = "l2";     // similarity-chain: criterion choosing the first unit
  std::string chain_distance = "weights";  // similarity-chain: "weights" or "features"
  const FeatureStats* stats = nullptr;     // calibration statistics (data-driven criteria)
};

// A clipped unit folded into its nearest kept twin (similarity-chain --merge).
struct MergeRecord {
  int group_id = 0;
  int64_t removed = 0, into = 0;
  double scale = 1.0;
};

class Criterion {
 public:
  virtual ~Criterion() = default;
  virtual std::string name() const = 0;
  // One score per channel of the group; higher means more important.
  virtual StatusOr<std::vector<double>> score(const ChannelGroup& group) = 0;
  // Adds each removed unit's consumer weights into its nearest kept unit, in the model that
  // `analysis` describes (which must have the same groups as the one scored). Only
  // similarity-chain supports it.
  virtual StatusOr<std::vector<MergeRecord>> mergeRemoved(const ChannelAnalysis& analysis,
                                                          const std::vector<GroupKeep>& plan) {
    (void)analysis, (void)plan;
    return invalidArgument("--merge is only supported by similarity-chain");
  }
};

struct CriterionInfo {
  std::string name;
  std::string description;
  StatsNeeds needs;  // calibration statistics it requires (none: weights only)
  bool needsData() const { return needs.cosine || needs.consumers || needs.gradients; }
  std::function<StatusOr<std::unique_ptr<Criterion>>(const CriterionOptions&)> make;
};

// Adds a criterion to the registry (the built-in ones are registered on first use).
void registerCriterion(CriterionInfo info);
// kInvalidArgument (listing the known names) for an unknown name.
StatusOr<const CriterionInfo*> findCriterion(const std::string& name);
StatusOr<std::unique_ptr<Criterion>> makeCriterion(const std::string& name,
                                                   const CriterionOptions& options);
StatusOr<std::unique_ptr<Criterion>> makeCriterion(const std::string& name, uint64_t seed = 0);
std::vector<std::string> criterionNames();

// Difference degree between the units of a group used by similarity-chain (exposed for tests):
// "weights": Euclidean distance between the units' weight vectors (the unit's slices of every
// producer and consumer, concatenated, scaled to unit length); "features": 1 - mean cosine of
// the units' feature maps.
StatusOr<std::vector<double>> unitDistances(const ChannelGroup& group, const std::string& kind,
                                            const FeatureStats* stats);
// The order in which similarity-chain clips all units: c_1 = argmin importance, then
// c_t = argmin over unclipped j of distance(c_{t-1}, j) (ties: lower index).
std::vector<int64_t> similarityChainOrder(const std::vector<double>& importance,
                                          const std::vector<double>& distance);

struct UniformPlanOptions {
  double ratio = 0.5;                // fraction of each group's channels to remove
  int64_t round_to = 1;              // kept counts are multiples of this (when the group allows)
  std::vector<std::string> exclude;  // layer names whose groups stay whole
  bool exact_only = false;           // approximate groups stay whole too
};

// Removes `ratio` of every prunable group's channels (at least one channel stays), choosing the
// lowest-scoring ones. Groups listed by `exclude` (any source layer's name, or output name)
// and groups that would not shrink are left out of the plan.
StatusOr<std::vector<GroupKeep>> planUniformPruning(const ChannelAnalysis& analysis,
                                                    Criterion& criterion,
                                                    const UniformPlanOptions& options);

// Keeps the `keep_count` best channels, returned ascending.
std::vector<int64_t> topChannels(const std::vector<double>& scores, int64_t keep_count);

// The same for a group whose channels a channel shuffle and Slices spread over several tensors
// (members with an index table that leave some channels out): each such cell of channels keeps
// its share of `keep_count` (at least one), so that no tensor loses all its channels.
std::vector<int64_t> keepChannels(const ChannelGroup& group, const std::vector<double>& scores,
                                  int64_t keep_count);

// True when `exclude` names one of the group's source layers (node or output name).
bool groupExcluded(const ChannelGroup& group, const std::vector<std::string>& exclude);

}  // namespace nnc
