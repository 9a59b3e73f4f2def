#pragma once
// Loading ONNX files into the IR and writing them back. This module is the only one that sees
// protobuf or ONNX headers; everything it does not interpret (functions, training info, unknown
// ops and domains, subgraphs, metadata) is carried through unchanged.

#include <cstdint>
#include <filesystem>
#include <string>

#include "nncompress/ir/graph.h"

namespace nnc {

struct LoadOptions {
  // Run ONNX shape inference (after the ONNX checker accepted the model) so that every value
  // gets a type and, where it can be derived, a static shape.
  bool infer_shapes = true;
};

struct SaveOptions {
  // Tensors of at least this many bytes are written to an external data file beside the model
  // (<output>.data). 0 disables external data (unless the model would exceed protobuf's 2 GiB).
  int64_t external_data_threshold = 0;
};

struct LoadedModelInfo {
  int64_t file_bytes = 0;           // the .onnx file
  int64_t external_data_bytes = 0;  // tensor bytes read from external data files
  bool shape_inference_ran = false;
  std::string shape_inference_note;  // why inference was skipped or partial, if it was
};

// Loads MODEL from a file. Errors name the problem (the caller adds the file name).
// Codes: kIoError (missing, unreadable, a directory), kInvalidModel (malformed),
// kUnsupported (well-formed but uses something we do not handle).
StatusOr<Model> loadModel(const std::filesystem::path& path, const LoadOptions& options = {},
                          LoadedModelInfo* info = nullptr);
// Same, from bytes already in memory (external data resolved against `base_dir`).
StatusOr<Model> parseModel(const std::string& bytes, const std::filesystem::path& base_dir = {},
                           const LoadOptions& options = {}, LoadedModelInfo* info = nullptr);

// Serialises the model. Never touches an existing file until the new one is complete: writes a
// temp file beside the target and renames it.
Status saveModel(const Model& model, const std::filesystem::path& path,
                 const SaveOptions& options = {});
// Same, but moves tensor bytes out of `model` instead of copying them (for one-shot pipelines
// whose model is no longer needed): halves peak memory on large models.
Status saveModelConsuming(Model& model, const std::filesystem::path& path,
                          const SaveOptions& options = {});
StatusOr<std::string> serializeModel(const Model& model);

// A deep copy (through the serialized form, so subgraphs and opaque parts come along), with the
// value types the original had. For trials that change a model while keeping the original.
StatusOr<Model> cloneModel(const Model& model);

// Runs the ONNX checker (full check, with shape inference in strict mode off) on a file.
Status checkModelFile(const std::filesystem::path& path);

// Re-runs ONNX shape inference on the IR (after a rewrite) and updates value types.
Status inferShapes(Model& model);

}  // namespace nnc
