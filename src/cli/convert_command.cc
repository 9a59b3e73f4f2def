#include <spdlog/spdlog.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "nncompress/cli/commands.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/pipeline/write_gate.h"
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

StatusOr<Model> loadInputModel(const std::string& path, bool strict, LoadedModelInfo* info) {
  LoadOptions options;
  options.strict = strict ? StrictLoad::kRefuse : StrictLoad::kWarn;
  auto model = loadModel(path, options, info);
  if (!model.isOk()) return model.status().withContext(path);
  if (!info->strict_finding.empty())
    spdlog::warn("{}: {} (loaded anyway: --no-strict)", path, info->strict_finding);
  if (!info->validation_note.empty()) spdlog::info("{}: {}", path, info->validation_note);
  return model;
}

Status writeOutputModel(Model& model, const std::string& path, const LoadedModelInfo& input,
                        const Model* reference, const SaveOptions& options) {
  WriteGateOptions gate;
  gate.reference = reference;
  Status written = writeValidatedModel(model, path, options, gate);
  if (written.code() == StatusCode::kInternal && !input.strict_finding.empty())
    written = invalidModel(written.message() + " (the input was invalid: " + input.strict_finding +
                           "; loaded with --no-strict)");
  return written.withContext(path);
}

Status raiseOpsetTo(Model& model, int64_t needed, const std::string& why, int64_t* converted_from) {
  *converted_from = 0;
  const int64_t have = model.opsetVersion("");
  if (have >= needed) return Status::ok();
  NNC_RETURN_IF_ERROR(convertModelOpset(model, needed));
  spdlog::info("converted the model from opset {} to {} (IR {}) for {}", have, needed,
               model.ir_version, why);
  *converted_from = have;
  return Status::ok();
}

Status runConvert(const ConvertOptions& options) {
  NNC_RETURN_IF_ERROR(checkOutputIsNotInput(options.model_path, options.output_path));
  LoadedModelInfo info;
  NNC_ASSIGN_OR_RETURN(Model model, loadInputModel(options.model_path, options.strict, &info));
  const int64_t opset_before = model.opsetVersion("");
  // The gate's reference: the model as loaded (a copy only when converting changes it).
  std::optional<Model> original;
  if (options.opset > 0 && options.opset != opset_before) {
    NNC_ASSIGN_OR_RETURN(original, cloneModel(model));
    Status converted = convertModelOpset(model, options.opset);
    if (!converted.isOk()) return converted.withContext(options.model_path);
    spdlog::info("converted from opset {} to {} (IR {})", opset_before, options.opset,
                 model.ir_version);
  }
  SaveOptions save;
  save.external_data_threshold = options.external_data_threshold;
  NNC_RETURN_IF_ERROR(
      writeOutputModel(model, options.output_path, info, original ? &*original : &model, save));
  std::error_code ec;
  const auto out_bytes = static_cast<int64_t>(std::filesystem::file_size(options.output_path, ec));
  if (options.json) {
    nlohmann::ordered_json j;
    j["output"] = options.output_path;
    j["before"] = {{"file_bytes", info.file_bytes + info.external_data_bytes}};
    j["after"] = {{"file_bytes", out_bytes}};
    j["opset"] = options.opset > 0 ? options.opset : opset_before;
    if (options.opset > 0 && options.opset != opset_before)
      j["converted_from_opset"] = opset_before;
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << "wrote " << options.output_path << " ("
              << humanBytes(static_cast<double>(out_bytes)) << ")\n";
  }
  return Status::ok();
}

}  // namespace nnc::cli
