#pragma once
// Loading ONNX files into the IR and writing them back. This module is the only one that sees
// protobuf or ONNX headers; everything it does not interpret (functions, training info, unknown
// ops and domains, subgraphs, metadata) is carried through unchanged.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "nncompress/ir/float16.h"
#include "nncompress/ir/graph.h"
#include "nncompress/ir/model_format.h"
#include "nncompress/ir/shape_inference.h"

namespace nnc {

// What loading does with a model whose declared shapes contradict its weights or what strict
// ONNX shape inference derives: nothing (not checked), report it in
// LoadedModelInfo::strict_finding, or refuse it (kInvalidModel, one line naming the node).
enum class StrictLoad { kOff, kWarn, kRefuse };

struct LoadOptions {
  // Run ONNX shape inference (after the ONNX checker accepted the model) so that every value
  // gets a type and, where it can be derived, a static shape.
  bool infer_shapes = true;
  // Opsets newer than we know are refused (kUnsupported) whatever this says.
  StrictLoad strict = StrictLoad::kOff;
};

struct LoadedModelInfo {
  int64_t file_bytes = 0;           // the .onnx file
  int64_t external_data_bytes = 0;  // tensor bytes read from external data files
  bool shape_inference_ran = false;
  std::string shape_inference_note;  // why inference was skipped or partial, if it was
  std::string strict_finding;        // with StrictLoad::kWarn: what kRefuse would refuse
  std::string validation_note;       // what the strict checks could not look at, if anything
  Float16Promotion float16;          // set by loadInputModel: a float16 model works in float32
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

// Model::clone() (kept for callers outside prune/ and pipeline/; new code calls clone()).
StatusOr<Model> cloneModel(const Model& model);

// Runs the ONNX checker (full check, with shape inference in strict mode off) on a file.
Status checkModelFile(const std::filesystem::path& path);

// The newest default-domain opset this build's ONNX (libonnx) has schemas for (17 for 1.12).
int64_t newestKnownOpset();
// The newest default-domain opset we accept on load: newestKnownOpset(), or 21, which quantize
// itself writes for int4 weights. libonnx cannot check models above newestKnownOpset().
inline constexpr int64_t kNewestWrittenOpset = 21;
// The lowest IR version the ONNX spec pairs with a default-domain opset (opset 9 -> IR 4, 13 ->
// 7, 17 -> 8, 21 -> 10).
int64_t irVersionForOpset(int64_t opset);

// Converts the model to default-domain opset `target` with ONNX's version converter (after
// shape inference, which some adapters need), raises the IR version as the spec requires and
// re-infers shapes. Weights are not copied. kUnsupported when the converter cannot do it.
Status convertOpset(Model& model, int64_t target);

// Declared shapes against what the weights and strict ONNX shape inference say: a conv weight
// that reads another channel count than its input has, a declared dim inference contradicts, an
// op whose inputs break its shape rules. kInvalidModel naming the node; ok when it cannot tell.
Status checkShapesStrictly(const Model& model, std::string* note = nullptr);

// Conv-family weights against their input's channel count (Conv, ConvInteger, QLinearConv,
// ConvTranspose): kInvalidModel naming the node when they disagree.
Status checkWeightChannels(const Model& model);
// Constant (or foldable) shape inputs against the shapes they produce: a Reshape target that
// cannot hold its input's elements, Expand's shape not broadcasting with the input, Tile
// repeats / Pad pads / Resize scales and sizes whose length does not fit the input's rank.
// kInvalidModel naming the node.
Status checkShapeInputs(const Model& model);

// Re-runs ONNX shape inference on the IR (after a rewrite) and updates value types.
Status inferShapes(Model& model);

// inferShapes as the IR's ShapeInference interface (for prune/ and pipeline/, which do not
// include onnx_io; the CLI hands this in).
const ShapeInference& onnxShapeInference();

// The ONNX format as the IR's ModelFormat interface (for the write gate in pipeline/, which does
// not include onnx_io; the CLI hands this in): checkShapeInputs, checkWeightChannels,
// irVersionForOpset, saveModel / saveModelConsuming and convertOpset above.
const ModelFormat& onnxModelFormat();

}  // namespace nnc
