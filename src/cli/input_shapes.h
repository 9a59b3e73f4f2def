#pragma once
// --input-shape [NAME=]DxDx...: the input dims at which MACs are counted, for models whose inputs
// have symbolic sides (H, W, sequence length) that a per-sample count would take as 1.

#include <string>
#include <vector>

#include "nncompress/data/dataset.h"
#include "nncompress/ir/graph.h"
#include "nncompress/ir/status.h"

namespace nnc::cli {

// report: gives graph inputs the static dims of `specs` (dims the file fixes must agree; a
// symbolic first axis stays the sample count MACs are per) and infers the shapes again.
Status pinInputShapes(Model& model, const std::vector<std::string>& specs);

// prune: sets the graph's counting sizes (Graph::countingSizes) of symbolic input dims past the
// first axis from `specs`, else from the shapes of the data's first sample (one per input; an
// input of another rank is left alone). The model's types stay symbolic, so what is written
// still takes any size. Returns a note for the log ("input: H=256, W=256"), empty when nothing
// was sized.
StatusOr<std::string> setCountingSizes(Model& model, const std::vector<std::string>& specs,
                                       data::SampleReader* reader);

}  // namespace nnc::cli
