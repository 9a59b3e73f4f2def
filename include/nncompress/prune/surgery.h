#pragma once
// Pruning surgery (METHODS.md, method 1, stage 3): apply a keep-list per channel group to every
// member: weights are gathered along their channel axis (with the group's Concat/Flatten index
// mapping), depthwise Conv `group` and Reshape shape constants follow the new channel counts,
// weights shared between layers are first given one copy per layer. Then the shrunk activations'
// shapes are updated, the graph verified and every per-channel parameter checked against its
// channel count (checkChannelParameters).

#include <vector>

#include "nncompress/analysis/channel_groups.h"
#include "nncompress/analysis/plan_cost.h"
#include "nncompress/ir/shape_inference.h"

namespace nnc {

// `analysis` must describe `model` as it is now. Fails when a keep-list names a group that is
// not prunable, is empty, or is out of range, or when the pruned graph does not verify; on
// every failure the model is left exactly as it was (all changes are planned first, applied
// with an undo log, and rolled back unless every check passes).
// Surgery sets the new channel counts of the activations it shrinks itself; with
// `shape_inference` (the CLI hands in onnx_io's) every intermediate shape is re-derived instead.
Status applyChannelPruning(Model& model, const ChannelAnalysis& analysis,
                           const std::vector<GroupKeep>& keeps,
                           const ShapeInference* shape_inference = nullptr);

}  // namespace nnc
