#pragma once
// What a keep-plan costs, computed from the channel groups without touching the model (no trial
// surgery, no shape inference): every member slot (value, axis) of a group in the plan loses the
// group's removed channels at its mapped indices; MACs follow from the shrunk shapes by the rules
// of model_stats, params from the shrunk weights. The numbers are those computeModelStats gives
// on the model after applyChannelPruning (prune/surgery), which this mirrors: a weight read by
// several pruned layers gets one copy per layer; nodes and initializers left unused are dropped.
// Groups are named by id, so one plan applies to the model and to any clone of it.

#include <cstdint>
#include <vector>

#include "nncompress/analysis/channel_groups.h"

namespace nnc {

struct GroupKeep {
  int group_id = 0;
  std::vector<int64_t> keep;  // channel indices to keep, ascending
};

struct PlanCost {
  int64_t params = 0;
  int64_t macs = 0;
  int64_t weight_bytes = 0;  // bytes of the weight tensors counted in params
};

// `analysis` must describe `model`; every group id in `plan` must be one of its groups.
PlanCost planCost(const Model& model, const ChannelAnalysis& analysis,
                  const std::vector<GroupKeep>& plan);

// An activation axis a plan shrinks: what surgery applies to the value types itself.
struct ShrunkAxis {
  const Value* value = nullptr;
  int axis = 0;
  int64_t removed = 0;  // member indices removed (channels times the mapping's repeat)
};
std::vector<ShrunkAxis> shrunkActivations(const ChannelAnalysis& analysis,
                                          const std::vector<GroupKeep>& plan);

}  // namespace nnc
