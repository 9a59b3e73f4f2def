#pragma once
// Models that compute in float16. Our executor, calibration, recovery and training work in
// float32, so such a model is promoted on load (every float16 value, weight, Constant and Cast
// target becomes float32) and written back afterwards in the form its user deployed: all float16
// again when it was all float16 and nothing was quantized, otherwise float32 inside with Casts
// that keep its float16 inputs and outputs.

#include <string>
#include <vector>

#include "nncompress/ir/graph.h"

namespace nnc {

struct Float16Promotion {
  bool promoted = false;             // the model had float16 values and now computes in float32
  bool pure = false;                 // it had no float32 value: it was float16 throughout
  std::vector<std::string> inputs;   // graph inputs that were float16
  std::vector<std::string> outputs;  // graph outputs that were float16
  int values = 0;                    // values promoted (weights included)
};

// Promotes every float16 value of the main graph to float32. A no-op (promoted false) for a model
// that does not compute in float16, and for one with subgraphs (If, Loop, Scan: they stay
// serialized, so their float16 values could not follow).
Float16Promotion promoteFloat16(Model& model);

// Undoes promoteFloat16 for writing: the whole model back to float16 when the promotion was pure,
// no quantization op was added and every weight fits float16's range; otherwise float32 inside
// with Casts at the inputs and outputs that were float16. Sets *demoted to which was done.
Status writeBackFloat16(Model& model, const Float16Promotion& promotion, bool* demoted = nullptr);

// A float16 or float32 tensor as the other type (float16 rounded to nearest even; values past
// its range become infinities).
Tensor convertFloatTensor(const Tensor& t, DType to);

// Whether the main graph computes in float16: a float16 graph input or output, or a float16 value
// read by anything but a Cast (float16 storage cast to float32 computes nothing in float16).
bool computesInFloat16(const Model& model);

}  // namespace nnc
