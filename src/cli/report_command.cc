#include <spdlog/spdlog.h>

#include <cstdlib>
#include <iostream>
#include <optional>

#include "nncompress/cli/commands.h"
#include "nncompress/onnx_io/file_util.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/report/model_report.h"

namespace nnc::cli {
namespace {

// "[NAME=]DxDx..." -> (name, dims).
StatusOr<std::pair<std::string, std::vector<int64_t>>> parseInputShape(const std::string& spec) {
  const size_t eq = spec.rfind('=');
  const std::string name = eq == std::string::npos ? "" : spec.substr(0, eq);
  const std::string text = eq == std::string::npos ? spec : spec.substr(eq + 1);
  std::vector<int64_t> dims;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t x = std::min(text.find('x', at), text.size());
    const std::string part = text.substr(at, x - at);
    char* end = nullptr;
    const long long d = part.empty() ? -1 : std::strtoll(part.c_str(), &end, 10);
    if (d < 1 || *end != '\0')
      return invalidArgument("--input-shape '" + spec +
                             "': expected [NAME=]DxDx... with positive integers, e.g. "
                             "1x3x224x224");
    dims.push_back(d);
    at = x + 1;
  }
  return std::pair{name, dims};
}

// Gives graph inputs the static dims of --input-shape (dims the file fixes must agree; a
// symbolic first axis stays the sample count MACs are per) and infers the shapes again.
Status pinInputShapes(Model& model, const std::vector<std::string>& specs) {
  std::vector<Value*> inputs;
  for (Value* v : model.graph->inputs())
    if (!v->isInitializer()) inputs.push_back(v);
  for (const std::string& spec : specs) {
    NNC_ASSIGN_OR_RETURN(auto parsed, parseInputShape(spec));
    const auto& [name, dims] = parsed;
    Value* v = nullptr;
    for (Value* in : inputs)
      if (in->name() == name || (name.empty() && inputs.size() == 1)) v = in;
    if (!v)
      return invalidArgument("--input-shape '" + spec + "': " +
                             (name.empty() ? "the model has " + std::to_string(inputs.size()) +
                                                 " inputs: name one (NAME=DIMS)"
                                           : "the model has no input '" + name + "'"));
    ValueType type = v->type();
    if (!type.shape || type.shape->size() != dims.size())
      return invalidArgument("--input-shape '" + spec + "': input '" + v->name() + "' is " +
                             v->type().toString() + " (give one size per dim; static ones stay)");
    for (size_t a = 0; a < dims.size(); ++a) {
      Dim& d = (*type.shape)[a];
      if (d.isKnown() && d.value != dims[a])
        return invalidArgument("--input-shape '" + spec + "': input '" + v->name() + "' is " +
                               v->type().toString() + " (give one size per dim; static ones stay)");
      if (a > 0 || d.isKnown()) d = Dim::known(dims[a]);  // a symbolic first axis: samples
    }
    v->setType(std::move(type));
  }
  return specs.empty() ? Status::ok() : inferShapes(model);
}

}  // namespace

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
