#pragma once
// Shape inference behind an interface: the IR and the modules above it (prune, pipeline) only
// see this; onnx_io implements it with libonnx (onnxShapeInference() in onnx_io/model_io.h) and
// the CLI hands that implementation in where a whole-model re-inference is wanted.

#include "nncompress/ir/graph.h"
#include "nncompress/ir/status.h"

namespace nnc {

class ShapeInference {
 public:
  virtual ~ShapeInference() = default;
  // Derives the types of the model's intermediate values again from its inputs and weights.
  virtual Status infer(Model& model) const = 0;
};

}  // namespace nnc
