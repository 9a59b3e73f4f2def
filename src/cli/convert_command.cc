#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "nncompress/cli/commands.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/report/model_report.h"

namespace nnc::cli {

Status checkOutputIsNotInput(const std::string& input, const std::string& output) {
  std::error_code ec;
  const bool same =
      std::filesystem::exists(output, ec) && std::filesystem::equivalent(input, output, ec);
  if (same || input == output)
    return invalidArgument(
        "output '" + output +
        "' is the input model: nncompress never overwrites its input; choose another -o path");
  return Status::ok();
}

Status runConvert(const ConvertOptions& options) {
  NNC_RETURN_IF_ERROR(checkOutputIsNotInput(options.model_path, options.output_path));
  LoadedModelInfo info;
  auto model = loadModel(options.model_path, {}, &info);
  if (!model.isOk()) return model.status().withContext(options.model_path);
  SaveOptions save;
  save.external_data_threshold = options.external_data_threshold;
  Status saved = saveModelConsuming(model.value(), options.output_path, save);
  if (!saved.isOk()) return saved.withContext(options.output_path);
  std::error_code ec;
  const auto out_bytes = static_cast<int64_t>(std::filesystem::file_size(options.output_path, ec));
  if (options.json) {
    nlohmann::ordered_json j;
    j["output"] = options.output_path;
    j["before"] = {{"file_bytes", info.file_bytes + info.external_data_bytes}};
    j["after"] = {{"file_bytes", out_bytes}};
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << "wrote " << options.output_path << " ("
              << humanBytes(static_cast<double>(out_bytes)) << ")\n";
  }
  return Status::ok();
}

}  // namespace nnc::cli
