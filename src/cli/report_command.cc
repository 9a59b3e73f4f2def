#include <iostream>

#include "nncompress/cli/commands.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/report/model_report.h"

namespace nnc::cli {

Status runReport(const ReportOptions& options) {
  LoadedModelInfo info;
  auto model = loadModel(options.model_path, {}, &info);
  if (!model.isOk()) return model.status().withContext(options.model_path);
  const ModelStats stats = computeModelStats(*model->graph);
  ReportInput input{&model.value(), options.model_path, info.file_bytes, info.external_data_bytes,
                    info.shape_inference_note};
  if (options.json) {
    std::cout << modelReportJson(input, stats).dump(2) << "\n";
  } else {
    std::cout << modelReportText(input, stats);
  }
  return Status::ok();
}

}  // namespace nnc::cli
