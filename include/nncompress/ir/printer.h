#pragma once
#include <string>

#include "nncompress/ir/graph.h"

namespace nnc {

// A stable, human-readable text form of a graph for golden tests and debugging. Tensors print as
// dtype/shape plus a short content digest, so two graphs print the same iff they are equal in
// structure, attributes and weights.
std::string printGraph(const Graph& graph);
std::string printModel(const Model& model);

}  // namespace nnc
