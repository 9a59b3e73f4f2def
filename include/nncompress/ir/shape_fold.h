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

struct ShapeFoldResult {
  // Fully known int64/int32 contents of values produced by nodes (small, shape-like tensors).
  std::unordered_map<const Value*, Tensor> values;
  // Better types for Reshape outputs whose target mixes numbers and symbolic dims, e.g.
  // x.view(x.size(0), -1): Reshape(x [N,64,1,1], [N, -1]) is [N, 64].
  std::unordered_map<const Value*, ValueType> refined_types;
};

// `opset` is the model's default-domain opset: ops whose meaning changed across versions are
// folded only in the versions whose semantics this file implements (unknown, -1: not folded).
ShapeFoldResult foldShapeComputations(const Graph& graph, int64_t opset);

}  // namespace nnc
