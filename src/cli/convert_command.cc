#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "nncompress/analysis/channel_groups.h"
#include "nncompress/cli/commands.h"
#include "nncompress/exec/shape_probe.h"
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

namespace {

// Where a path would land, for comparing paths of files that may not exist yet.
std::filesystem::path resolved(const std::string& path) {
  std::error_code ec;
  const std::filesystem::path absolute = std::filesystem::absolute(path, ec).lexically_normal();
  const std::filesystem::path p = std::filesystem::weakly_canonical(absolute, ec);
  return ec ? absolute : p;
}

Status checkWritableLocation(const OutputPath& out) {
  const std::filesystem::path path(out.path);
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : ".";
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    return ioError("output directory '" + dir.string() + "' does not exist").withContext(out.path);
  if (std::filesystem::is_directory(path, ec))
    return ioError("output path is a directory").withContext(out.path);
  if (::access(dir.c_str(), W_OK) != 0)
    return ioError("output directory '" + dir.string() + "' is not writable").withContext(out.path);
  return Status::ok();
}

}  // namespace

Status checkOutputPaths(const std::string& input, const std::vector<OutputPath>& outputs) {
  std::vector<OutputPath> given;
  for (const OutputPath& out : outputs)
    if (!out.path.empty()) given.push_back(out);
  for (size_t i = 0; i < given.size(); ++i) {
    Status not_input = checkOutputIsNotInput(input, given[i].path);
    if (!not_input.isOk() || resolved(given[i].path) == resolved(input))
      return invalidArgument(given[i].flag + " '" + given[i].path +
                             "' is the input model: nncompress never overwrites its input");
    for (size_t j = 0; j < i; ++j)
      if (resolved(given[i].path) == resolved(given[j].path))
        return invalidArgument(given[i].flag + " '" + given[i].path + "' is the same file as " +
                               given[j].flag + ": every output needs its own path");
  }
  for (const OutputPath& out : given) NNC_RETURN_IF_ERROR(checkWritableLocation(out));
  return Status::ok();
}

WrittenModel::WrittenModel(std::string path) : path_(std::move(path)) {
  std::error_code ec;
  if (std::filesystem::exists(dataPath(), ec))
    data_time_before_ = std::filesystem::last_write_time(dataPath(), ec);
}

WrittenModel::~WrittenModel() {
  if (!written_ || kept_) return;
  std::error_code ec;
  std::filesystem::remove(path_, ec);
  // OUT.data only when this command wrote it (a new file, or one replaced since we started).
  if (std::filesystem::exists(dataPath(), ec) &&
      (!data_time_before_ || std::filesystem::last_write_time(dataPath(), ec) != data_time_before_))
    std::filesystem::remove(dataPath(), ec);
}

Status WrittenModel::write(Model& model, const LoadedModelInfo& input, const Model* reference,
                           const SaveOptions& options,
                           std::function<StatusOr<Model>()> load_reference) {
  NNC_RETURN_IF_ERROR(
      writeOutputModel(model, path_, input, reference, options, std::move(load_reference)));
  written_ = true;
  return Status::ok();
}

StatusOr<Model> loadInputModel(const std::string& path, bool strict, LoadedModelInfo* info,
                               bool promote_float16) {
  LoadOptions options;
  options.strict = strict ? StrictLoad::kRefuse : StrictLoad::kWarn;
  auto model = loadModel(path, options, info);
  if (!model.isOk()) return model.status().withContext(path);
  // Per-channel parameters that do not match their channel count (a 5-entry bias on 4 output
  // channels): an invalid input, not something the write gate should find later.
  if (Status channels = checkChannelParameters(*model); !channels.isOk()) {
    if (strict) return channels.withContext(path);
    if (info->strict_finding.empty()) info->strict_finding = channels.message();
  }
  if (!info->strict_finding.empty())
    spdlog::warn("{}: {} (loaded anyway: --no-strict)", path, info->strict_finding);
  if (!info->validation_note.empty()) spdlog::info("{}: {}", path, info->validation_note);
  if (promote_float16) {
    info->float16 = promoteFloat16(*model);
    if (info->float16.promoted)
      spdlog::info("{}: computes in float16; working on it in float32 ({} values promoted)", path,
                   info->float16.values);
  }
  completeUnknownShapes(*model, path);
  return model;
}

void completeUnknownShapes(Model& model, const std::string& path) {
  const exec::ShapeProbeResult probe = exec::completeShapesByRunning(model);
  if (probe.values_completed > 0)
    spdlog::info(
        "{}: shapes of {} values that ONNX shape inference left unknown, found by "
        "running the model",
        path, probe.values_completed);
  else if (!probe.not_run_reason.empty())
    spdlog::debug("{}: some shapes stay unknown: the model could not be run to find them ({})",
                  path, probe.not_run_reason);
}

Status writeOutputModel(Model& model, const std::string& path, const LoadedModelInfo& input,
                        const Model* reference, const SaveOptions& options,
                        std::function<StatusOr<Model>()> load_reference) {
  bool demoted = false;
  NNC_RETURN_IF_ERROR(writeBackFloat16(model, input.float16, &demoted).withContext(path));
  if (input.float16.promoted)
    spdlog::info("{}: written as {}", path,
                 demoted ? "float16" : "float32 inside, float16 inputs and outputs kept by Casts");
  WriteGateOptions gate;
  gate.reference = reference;
  gate.load_reference = std::move(load_reference);
  Status written = writeValidatedModel(model, path, onnxModelFormat(), options, gate);
  if (written.code() == StatusCode::kInternal && !input.strict_finding.empty())
    written = invalidModel(written.message() + " (the input was invalid: " + input.strict_finding +
                           "; loaded with --no-strict)");
  return written.withContext(path);
}

Status raiseOpsetTo(Model& model, int64_t needed, const std::string& why, int64_t* converted_from) {
  *converted_from = 0;
  const int64_t have = model.opsetVersion("");
  if (have >= needed) return Status::ok();
  NNC_RETURN_IF_ERROR(convertModelOpset(model, needed, onnxModelFormat()));
  spdlog::info("converted the model from opset {} to {} (IR {}) for {}", have, needed,
               model.ir_version, why);
  completeUnknownShapes(model, "the converted model");
  *converted_from = have;
  return Status::ok();
}

Status runConvert(const ConvertOptions& options) {
  NNC_RETURN_IF_ERROR(checkOutputIsNotInput(options.model_path, options.output_path));
  LoadedModelInfo info;
  // Converting keeps every element type as it is.
  NNC_ASSIGN_OR_RETURN(Model model,
                       loadInputModel(options.model_path, options.strict, &info, false));
  const int64_t opset_before = model.opsetVersion("");
  // The gate's reference: the model as loaded (a copy only when converting changes it).
  std::optional<Model> original;
  if (options.opset > 0 && options.opset != opset_before) {
    NNC_ASSIGN_OR_RETURN(original, cloneModel(model));
    Status converted = convertModelOpset(model, options.opset, onnxModelFormat());
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
