#include "data_options.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>

namespace nnc::cli {

StatusOr<data::Preprocess> preprocessFrom(const DataOptions& o) {
  data::Preprocess p;
  const std::pair<const char*, const std::string*> flags[] = {{"scale", &o.scale},
                                                              {"mean", &o.mean},
                                                              {"std", &o.std},
                                                              {"size", &o.size},
                                                              {"center-crop", &o.center_crop},
                                                              {"channels", &o.channels}};
  for (const auto& [name, value] : flags) {
    if (value->empty()) continue;
    Status s = data::setPreprocessOption(p, name, *value);
    if (!s.isOk()) return invalidArgument("--" + std::string(name) + ": " + s.message());
  }
  return p;
}

StatusOr<std::optional<data::DataRange>> rangeFrom(const DataOptions& o) {
  if (o.range.empty()) return std::optional<data::DataRange>();
  auto range = data::parseDataRange(o.range);
  if (!range.isOk()) return range.status().withContext(o.range_flag);
  return std::optional<data::DataRange>(*range);
}

namespace {

std::vector<data::FeedInput> feedInputsOf(const Model& model) {
  std::vector<data::FeedInput> inputs;
  for (const Value* v : model.graph->inputs())
    if (!v->isInitializer()) inputs.push_back({v->name(), v->dtype()});
  return inputs;
}

// The one float input when its declared shape has no batch axis: as many dims as a sample, each
// known one equal to the sample's (a [3, H, W] image input of a torchvision detection export).
const Value* unbatchedInput(const Model& model, const Shape& sample) {
  std::vector<const Value*> fed;
  for (const Value* v : model.graph->inputs())
    if (!v->isInitializer()) fed.push_back(v);
  const Value* in = fed.size() == 1 ? fed.front() : nullptr;
  if (!in || in->dtype() != DType::kFloat32 || !in->type().shape) return nullptr;
  const auto& dims = *in->type().shape;
  if (dims.size() != sample.size() || dims.empty()) return nullptr;
  for (size_t i = 0; i < dims.size(); ++i)
    if (dims[i].isKnown() && dims[i].value != sample[i]) return nullptr;
  return in;
}

std::string namesOf(const std::vector<data::FeedInput>& inputs) {
  std::string names;
  for (const auto& in : inputs) names += (names.empty() ? "" : ", ") + in.name;
  return names;
}

// The input_N.pb files of an ONNX test_data_set folder, in number order (input_2 before input_10).
std::vector<std::string> inputFilesOf(const std::string& folder) {
  std::vector<std::pair<long, std::string>> numbered;
  std::error_code ec;
  if (!std::filesystem::is_directory(folder, ec)) return {};
  for (const auto& e : std::filesystem::directory_iterator(folder, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() < 10 || name.rfind("input_", 0) != 0 || !name.ends_with(".pb")) continue;
    const std::string digits = name.substr(6, name.size() - 9);
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    numbered.push_back({std::stol(digits), e.path().string()});
  }
  std::sort(numbered.begin(), numbered.end());
  std::vector<std::string> files;
  for (auto& [n, path] : numbered) files.push_back(std::move(path));
  return files;
}

// One spec per model input, in input order: NAME=SPEC where NAME is an input, else unnamed specs
// fill the inputs left, in order (a path may hold '=' when its prefix names no input). One
// unnamed test_data_set folder for a model with several inputs feeds input_N.pb to input N.
StatusOr<std::vector<std::string>> specsByInput(const std::vector<std::string>& given,
                                                const std::vector<data::FeedInput>& inputs) {
  if (given.size() == 1 && inputs.size() > 1) {
    std::vector<std::string> files = inputFilesOf(given.front());
    if (files.size() == inputs.size()) return files;
  }
  std::vector<std::string> specs(inputs.size());
  std::vector<std::string> unnamed;
  for (const std::string& g : given) {
    const size_t eq = g.find('=');
    auto it = std::find_if(inputs.begin(), inputs.end(), [&](const data::FeedInput& in) {
      return eq != std::string::npos && g.compare(0, eq, in.name) == 0 && in.name.size() == eq;
    });
    if (it == inputs.end()) {
      // NAME=SPEC with a NAME the model lacks (not a path that holds '=').
      if (eq != std::string::npos && !std::filesystem::exists(g))
        return invalidArgument("'" + g.substr(0, eq) +
                               "' names no input of the model (inputs: " + namesOf(inputs) + ")");
      unnamed.push_back(g);
      continue;
    }
    std::string& slot = specs[it - inputs.begin()];
    if (!slot.empty()) return invalidArgument("input '" + it->name + "' is given twice");
    slot = g.substr(eq + 1);
  }
  for (std::string& slot : specs)
    if (slot.empty() && !unnamed.empty()) slot = unnamed.front(), unnamed.erase(unnamed.begin());
  if (!unnamed.empty())
    return invalidArgument("'" + unnamed.front() + "' names no input of the model (inputs: " +
                           namesOf(inputs) + "); give NAME=SPEC for each input");
  for (size_t i = 0; i < specs.size(); ++i)
    if (specs[i].empty())
      return invalidArgument("no data for model input '" + inputs[i].name +
                             "' (inputs: " + namesOf(inputs) + "); give NAME=SPEC for each input");
  return specs;
}

StatusOr<std::unique_ptr<data::SampleReader>> openOne(const DataOptions& o, const std::string& spec,
                                                      const data::Preprocess& pre) {
  NNC_ASSIGN_OR_RETURN(const std::optional<data::DataRange> range, rangeFrom(o));
  auto reader = data::openData(
      spec, pre,
      o.unlabelled ? data::FolderLayout::kUnlabelled : data::FolderLayout::kClassSubfolders);
  if (reader.isOk() && range) reader = data::sliceData(std::move(reader).value(), *range);
  if (!reader.isOk()) return reader.status().withContext(spec);
  return reader;
}

}  // namespace

std::string dataText(const DataOptions& o) {
  std::string text;
  for (const std::string& d : o.data) text += (text.empty() ? "" : " ") + d;
  return text;
}

StatusOr<std::unique_ptr<data::SampleReader>> openReader(const DataOptions& o, const Model& model,
                                                         const char* role) {
  NNC_ASSIGN_OR_RETURN(data::Preprocess pre, preprocessFrom(o));
  const std::vector<data::FeedInput> inputs = feedInputsOf(model);
  if (inputs.empty()) return unsupported("the model has no inputs to feed");
  auto specs = specsByInput(o.data, inputs);
  if (!specs.isOk()) return specs.status().withContext(dataText(o));
  std::unique_ptr<data::SampleReader> reader;
  if (inputs.size() == 1 && inputs[0].dtype == DType::kFloat32) {  // as before feeds existed
    NNC_ASSIGN_OR_RETURN(reader, openOne(o, specs->front(), pre));
    if (const Value* in = unbatchedInput(model, reader->sampleShape())) {
      spdlog::info("model input '{}' {} has no batch axis: one sample per run", in->name(),
                   in->type().toString());
      reader = data::unbatchedReader(std::move(reader));
    }
  } else {
    std::vector<std::unique_ptr<data::SampleReader>> readers;
    for (const std::string& spec : *specs) {
      NNC_ASSIGN_OR_RETURN(auto r, openOne(o, spec, pre));
      readers.push_back(std::move(r));
    }
    auto fed = data::feedModelInputs(inputs, std::move(readers));
    if (!fed.isOk()) return fed.status().withContext(dataText(o));
    reader = std::move(fed).value();
  }
  spdlog::info("{}: {}", role, reader->description());
  return reader;
}

int64_t batchFor(const Model& model, const data::SampleReader& reader, int64_t requested) {
  return std::min(batchLimit(model, requested), std::max<int64_t>(1, reader.maxBatch()));
}

StatusOr<std::optional<std::vector<int64_t>>> openLabels(const DataOptions& o,
                                                         const data::SampleReader& reader) {
  if (!o.labels.empty()) {
    NNC_ASSIGN_OR_RETURN(const std::optional<data::DataRange> range, rangeFrom(o));
    auto l = data::readLabels(o.labels);
    if (l.isOk() && range) l = data::sliceLabels(*l, *range);
    if (!l.isOk()) return l.status().withContext(o.labels);
    return std::optional<std::vector<int64_t>>(std::move(l).value());
  }
  return reader.labels();
}

}  // namespace nnc::cli
