#include <spdlog/spdlog.h>

#include <cstdlib>
#include <iostream>
#include <optional>

#include "input_shapes.h"
#include "nncompress/cli/commands.h"
#include "nncompress/onnx_io/file_util.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/report/model_report.h"

namespace nnc::cli {

Status runReport(const ReportOptions& options) {
  if (!options.html_path.empty())
    NNC_RETURN_IF_ERROR(checkOutputIsNotInput(options.model_path, options.html_path));
  LoadedModelInfo info;
  // A report describes what is there, invalid or not: strict findings are warnings here.
  LoadOptions load;
  load.strict = StrictLoad::kWarn;
  auto model = loadModel(options.model_path, load, &info);
  if (!model.isOk()) return model.status().withContext(options.model_path);
  if (!info.strict_finding.empty())
    spdlog::warn("{}: {} (other commands refuse this model unless --no-strict)", options.model_path,
                 info.strict_finding);
  NNC_RETURN_IF_ERROR(pinInputShapes(*model, options.input_shapes));
  completeUnknownShapes(*model, options.model_path);
  const ModelStats stats = computeModelStats(*model->graph);
  ReportInput input{
      &model.value(),           options.model_path,        info.file_bytes,
      info.external_data_bytes, info.shape_inference_note, symbolicInputDims(*model->graph)};
  std::optional<ChannelAnalysis> channels;
  if (options.prunable || !options.html_path.empty()) channels = analyzeChannels(*model);
  if (!options.html_path.empty()) {
    Status written =
        writeStringAtomically(options.html_path, modelReportHtml(input, stats, &channels.value()));
    if (!written.isOk()) return written.withContext(options.html_path);
    if (!options.prunable) channels.reset();
  }
  if (options.json) {
    auto j = modelReportJson(input, stats);
    if (channels) {
      auto p = prunableJson(*channels);
      j["prunable_macs_share"] = p["prunable_macs_share"];
      j["exact_prunable_macs_share"] = p["exact_prunable_macs_share"];
      j["groups"] = p["groups"];
      j["barriers"] = p["barriers"];
    }
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << modelReportText(input, stats);
    if (channels) std::cout << prunableText(*channels);
  }
  return Status::ok();
}

}  // namespace nnc::cli
