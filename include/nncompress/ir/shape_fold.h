#pragma once
// Evaluates the small integer subgraphs exporters emit to compute shapes at run time
// (Shape -> Gather -> Unsqueeze -> Concat -> Reshape, Shape -> Div -> Slice for channel splits,
// ...) wherever their inputs are known before run time: constants, or Shape of a value whose
// shape is static. ONNX's own data propagation stops short of several of these; feeding the
// folded values back into shape inference makes the shapes after them static too.
// The model is not changed: the caller decides what to do with the values.

#include <unordered_map>

#include "nncompress/ir/graph.h"

namespace nnc {

// Folded int64/int32 values by the value they are the content of. Includes only values produced
// by nodes (not initializers), and only small tensors (shape-like data).
std::unordered_map<const Value*, Tensor> foldShapeComputations(const Graph& graph);

}  // namespace nnc
