#pragma once
// A model file format behind an interface: the IR and the modules above it (pipeline's write
// gate) only see this; onnx_io implements it for ONNX (onnxModelFormat() in onnx_io/model_io.h)
// and the CLI hands that implementation in, as it does ShapeInference.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "nncompress/ir/graph.h"
#include "nncompress/ir/status.h"

namespace nnc {

struct SaveOptions {
  // Tensors of at least this many bytes are written to an external data file beside the model
  // (<output>.data). 0 disables external data (unless the model would exceed protobuf's 2 GiB).
  int64_t external_data_threshold = 0;
  // Run the ONNX checker and strict shape inference (data propagation on) on the serialized model
  // before anything is written; a finding is kInternal (the model was built wrong) and nothing
  // is written. What could not be checked (opsets newer than libonnx, ops without a schema) is
  // appended to `validation_notes` when given.
  bool validate = false;
  std::vector<std::string>* validation_notes = nullptr;
  double* validation_seconds = nullptr;  // receives the time the validation took
};

class ModelFormat {
 public:
  virtual ~ModelFormat() = default;
  // Constant (or foldable) shape inputs against the shapes they produce (a Reshape target that
  // cannot hold its input's elements, ...): kInvalidModel naming the node.
  virtual Status checkShapeInputs(const Model& model) const = 0;
  // Conv-family weights against their input's channel count: kInvalidModel naming the node.
  virtual Status checkWeightChannels(const Model& model) const = 0;
  // The lowest IR version the format pairs with a default-domain opset.
  virtual int64_t irVersionForOpset(int64_t opset) const = 0;
  // Writes the model atomically (nothing on disk on failure), validating the serialized form
  // first when options.validate is set. With `consume`, tensor bytes move out of the model
  // (halves peak memory; the model is left without weights).
  virtual Status save(Model& model, const std::filesystem::path& path, const SaveOptions& options,
                      bool consume) const = 0;
  // Converts the model to default-domain opset `target`; kUnsupported when it cannot.
  virtual Status convertOpset(Model& model, int64_t target) const = 0;
};

}  // namespace nnc
