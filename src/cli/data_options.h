#pragma once
// --data/--labels and the preprocessing flags, shared by every command that reads samples.

#include <memory>
#include <optional>
#include <vector>

#include "nncompress/cli/commands.h"
#include "nncompress/data/dataset.h"
#include "nncompress/ir/graph.h"

namespace nnc::cli {

StatusOr<data::Preprocess> preprocessFrom(const DataOptions& options);
// --data-range (or options.range_flag) parsed; nullopt when not given.
StatusOr<std::optional<data::DataRange>> rangeFrom(const DataOptions& options);
// Opens options.data for the inputs of `model` (its graph inputs that are not initializers)
// with the preprocessing flags, sliced to options.range; logs what it found. A model with one
// input takes one SPEC; a model with several takes NAME=SPEC for each (unnamed SPECs feed the
// inputs not named, in order). Integer inputs (token ids, masks) read the stored values exactly.
// `role` names it in logs ("data", "calibration data").
StatusOr<std::unique_ptr<data::SampleReader>> openReader(const DataOptions& options,
                                                         const Model& model,
                                                         const char* role = "data");
// The specs of options.data joined for messages.
std::string dataText(const DataOptions& options);

// `requested`, or less where the model fixes its batch (batchLimit) or the reader takes one
// sample per run (a model input without a batch axis).
int64_t batchFor(const Model& model, const data::SampleReader& reader, int64_t requested);
// Labels from --labels (sliced to options.range like the data), else those that come with the
// data (class subfolders), else nullopt.
StatusOr<std::optional<std::vector<int64_t>>> openLabels(const DataOptions& options,
                                                         const data::SampleReader& reader);

}  // namespace nnc::cli
