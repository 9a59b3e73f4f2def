#pragma once
// Channel importance criteria and the plan that turns scores into keep-lists.
// A group's score aggregates every weight member of the group (producers and consumers), not
// only its first convolution: a channel is cheap to remove only if all layers it feeds agree.

#include <memory>
#include <string>
#include <vector>

#include "nncompress/prune/surgery.h"

namespace nnc {

class Criterion {
 public:
  virtual ~Criterion() = default;
  virtual std::string name() const = 0;
  // One score per channel of the group; higher means more important.
  virtual StatusOr<std::vector<double>> score(const ChannelGroup& group) = 0;
};

// "l1", "l2" (weight norms) or "random" (the honest baseline). kInvalidArgument otherwise.
StatusOr<std::unique_ptr<Criterion>> makeCriterion(const std::string& name, uint64_t seed = 0);
std::vector<std::string> criterionNames();

struct UniformPlanOptions {
  double ratio = 0.5;                // fraction of each group's channels to remove
  int64_t round_to = 1;              // kept counts are multiples of this (when the group allows)
  std::vector<std::string> exclude;  // layer names whose groups stay whole
};

// Removes `ratio` of every prunable group's channels (at least one channel stays), choosing the
// lowest-scoring ones. Groups listed by `exclude` (any source layer's name, or output name)
// and groups that would not shrink are left out of the plan.
StatusOr<std::vector<GroupKeep>> planUniformPruning(const ChannelAnalysis& analysis,
                                                    Criterion& criterion,
                                                    const UniformPlanOptions& options);

// Keeps the `keep_count` best channels, returned ascending.
std::vector<int64_t> topChannels(const std::vector<double>& scores, int64_t keep_count);

}  // namespace nnc
