#pragma once
// Shapes that ONNX shape inference leaves unknown, found by running the model.
//
// Exporters compute shapes at run time from symbolic dims: PyTorch's attention reshapes
// [L, N, E] to [L, N*heads, E/heads], and older opsets spell LayerNorm and GELU as chains of
// small ops. ONNX inference gives up there, so MACs go uncounted and the channel analysis sees
// no static channel axis after the first attention block. Running the graph twice, with every
// symbolic input dim at two different sizes, shows which dims of each value are static (the same
// in both runs), which follow an input's symbol (equal to it in both runs, a whole multiple of a
// batch symbol as in "4*N", a power-of-two multiple or fraction of another as in "H/2" after a
// stride), and which vary otherwise (left unknown).
//
// Only shapes the inputs' shapes decide are filled. A value whose shape can depend on tensor
// contents gets its rank at most: the outputs of NonZero, Unique, control flow and the like, a
// Reshape (or Expand, Slice, ...) whose target is computed from input data, and all after them.
// The types change in memory only; a written model lists value types as its input file did. A
// graph output keeps its declared type even in memory (the interface); what the runs proved for
// it is kept as Value::provenDims, which MAC counting reads.

#include <string>

#include "nncompress/ir/graph.h"

namespace nnc::exec {

struct ShapeProbeResult {
  int values_completed = 0;  // values whose type gained a rank or a static / symbolic dim
  bool ran = false;          // false: nothing was unknown, or the model could not be run
  std::string not_run_reason;
};

// Completes the types of `model`'s node outputs in place. Never fails: when the model cannot be
// run (an op without a kernel, an input without a rank, a run error), nothing changes and the
// reason is returned.
ShapeProbeResult completeShapesByRunning(Model& model);

}  // namespace nnc::exec
