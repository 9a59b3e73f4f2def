#pragma once
// Small helpers shared by the recovery methods (batch_norm_reestimation.cc, recovery.cc).

#include <string>

#include "nncompress/ir/graph.h"

namespace nnc::recovery {

// Writes `tensor` as input `index` of `node`: in place when the node is the only reader of an
// initializer, else as a new initializer named after `base` (weights may be shared).
void setConstantInput(Graph& graph, Node& node, size_t index, Tensor tensor,
                      const std::string& base);

// The node's name, else its first output's, else its op type (for messages and results).
std::string layerName(const Node& n);

}  // namespace nnc::recovery
