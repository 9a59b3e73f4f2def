#pragma once
// The validation gate: no command writes a model it has not validated. In order:
//   1. constant shape inputs agree with the shapes they produce (Reshape target vs its input's
//      element count, Tile repeats / Resize scales and sizes / Pad pads vs the input's rank,
//      Expand's shape broadcast against the input), and conv weights read the channel count
//      their input has;
//   2. every per-channel parameter's length matches its channel axis (analysis);
//   3. when our executor runs every op: one run on a sample input (unknown dims 1 for the first
//      axis, 64 elsewhere): outputs of the declared rank and dims, every value finite;
//   4. on the serialized form (built once, then written): the ONNX checker and strict ONNX shape
//      inference with data propagation.
// Any finding is kInternal (exit 5: the model was built wrong), one line naming the node and
// what disagrees, and nothing is written (no output, no temp file, no .data file).
// What a step cannot check is said in the notes: libonnx 1.12 knows opsets up to 17 (int4
// output, opset 21, gets steps 1-3 only); ops without an ONNX schema (custom domains) are
// accepted unchecked by the checker; a model our executor cannot run skips step 3.
// The file format (steps 1 and 4, writing, opset conversion) is handed in as a ModelFormat
// (onnx_io's onnxModelFormat(), from the CLI): pipeline/ does not include onnx_io.

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "nncompress/ir/graph.h"
#include "nncompress/ir/model_format.h"

namespace nnc {

struct WriteGateReport {
  std::vector<std::string> notes;  // what could not be checked, and why
  bool sample_run = false;         // step 3 ran
  double seconds = 0;              // time spent validating (serialization excluded)
};

struct WriteGateOptions {
  // Tensor bytes move out of the model while serializing (halves peak memory; the model is left
  // without weights).
  bool consume = true;
  // The model the output was made from (same inputs). When the sample run fails with input dims
  // we chose ourselves, it decides: if the reference runs on the same input, the output is
  // wrong (a finding); if not, our choice of dims is (a note).
  const Model* reference = nullptr;
  // When `reference` is null: loads the reference on first use (a command that freed its input
  // model before writing hands in a reload of the file; the reference is rarely needed).
  std::function<StatusOr<Model>()> load_reference;
};

// Steps 1-3 on the IR (the model is not changed).
Status checkModelBeforeWrite(const Model& model, const ModelFormat& format,
                             const Model* reference = nullptr, WriteGateReport* report = nullptr);

// Raises the IR version to what the model's opset needs, validates (steps 1-4) and writes the
// model atomically. On any failure nothing is on disk.
Status writeValidatedModel(Model& model, const std::filesystem::path& path,
                           const ModelFormat& format, const SaveOptions& options = {},
                           const WriteGateOptions& gate = {}, WriteGateReport* report = nullptr);

// format.convertOpset (onnx_io's convertOpset) after completing unknown shapes by running the
// model (exec/shape_probe.h): ONNX's version converter rewrites some ops by their input's rank
// (Softmax 12 -> 13) and fails without it, e.g. on attention blocks whose shapes are computed at
// run time.
Status convertModelOpset(Model& model, int64_t target, const ModelFormat& format);

}  // namespace nnc
