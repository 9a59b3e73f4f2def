#pragma once
// Fine-tuning as the commands run it: TrainSettings turned into FinetuneOptions, progress on
// stderr (loss, images/s, ETA), one log line per epoch.

#include <nlohmann/json.hpp>

#include "nncompress/cli/commands.h"
#include "nncompress/pipeline/finetune.h"

namespace nnc::cli {

StatusOr<FinetuneOptions> finetuneOptionsFrom(const TrainSettings& settings, int epochs);

// Runs finetune() with a progress display. Logs a summary line.
StatusOr<FinetuneResult> finetuneWithProgress(Model& student, const Model& teacher,
                                              data::SampleReader& data, FinetuneOptions options);

nlohmann::ordered_json finetuneJson(const FinetuneResult& result);

}  // namespace nnc::cli
