#pragma once
#include "nncompress/ir/graph.h"

namespace nnc {

// Checks the IR's invariants: every node input is defined (graph input, initializer or node
// output), use-lists and producer links agree, names are unique, graph outputs are defined,
// initializer types match their data, and the graph is acyclic. Returns the first problem.
Status verifyGraph(const Graph& graph);
Status verifyModel(const Model& model);

}  // namespace nnc
