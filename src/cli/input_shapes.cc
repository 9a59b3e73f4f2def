#include "input_shapes.h"

#include <cstdint>
#include <cstdlib>
#include <map>

#include "nncompress/onnx_io/model_io.h"

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
    // At most 2^31 - 1: MACs multiply dims in 64 bits.
    if (d < 1 || d > INT32_MAX || *end != '\0')
      return invalidArgument("--input-shape '" + spec +
                             "': expected [NAME=]DxDx... with positive integers below 2^31, "
                             "e.g. 1x3x224x224");
    dims.push_back(d);
    at = x + 1;
  }
  return std::pair{name, dims};
}

// The inputs a run feeds (not initializers listed as inputs).
std::vector<Value*> fedInputs(const Model& model) {
  std::vector<Value*> inputs;
  for (Value* v : model.graph->inputs())
    if (!v->isInitializer()) inputs.push_back(v);
  return inputs;
}

struct InputShape {
  Value* input = nullptr;
  std::vector<int64_t> dims;  // one per dim of the input; agrees with every static one
};

// The input `spec` names (or the only one) and its dims, checked against the file's.
StatusOr<InputShape> resolveInputShape(Model& model, const std::string& spec) {
  NNC_ASSIGN_OR_RETURN(auto parsed, parseInputShape(spec));
  const auto& [name, dims] = parsed;
  const std::vector<Value*> inputs = fedInputs(model);
  Value* v = nullptr;
  for (Value* in : inputs)
    if (in->name() == name || (name.empty() && inputs.size() == 1)) v = in;
  if (!v)
    return invalidArgument("--input-shape '" + spec + "': " +
                           (name.empty() ? "the model has " + std::to_string(inputs.size()) +
                                               " inputs: name one (NAME=DIMS)"
                                         : "the model has no input '" + name + "'"));
  const auto& shape = v->type().shape;
  bool agrees = shape && shape->size() == dims.size();
  for (size_t a = 0; agrees && a < dims.size(); ++a)
    agrees = !(*shape)[a].isKnown() || (*shape)[a].value == dims[a];
  if (!agrees)
    return invalidArgument("--input-shape '" + spec + "': input '" + v->name() + "' is " +
                           v->type().toString() + " (give one size per dim; static ones stay)");
  return InputShape{v, dims};
}

// Symbolic dims past the first axis of `input` at `dims` into `sizes`; "H=256" notes.
void addSizes(const Value& input, const std::vector<int64_t>& dims,
              std::map<std::string, int64_t>& sizes, std::string& note) {
  const auto& shape = *input.type().shape;
  std::string sized;
  for (size_t a = 1; a < shape.size() && a < dims.size(); ++a) {
    if (shape[a].isKnown() || shape[a].param.empty()) continue;
    sizes[shape[a].param] = dims[a];
    sized += (sized.empty() ? "" : ", ") + shape[a].param + "=" + std::to_string(dims[a]);
  }
  if (!sized.empty()) note += (note.empty() ? "" : "; ") + input.name() + ": " + sized;
}

}  // namespace

Status pinInputShapes(Model& model, const std::vector<std::string>& specs) {
  for (const std::string& spec : specs) {
    NNC_ASSIGN_OR_RETURN(const InputShape pin, resolveInputShape(model, spec));
    ValueType type = pin.input->type();
    for (size_t a = 0; a < pin.dims.size(); ++a) {
      Dim& d = (*type.shape)[a];
      if (a > 0 || d.isKnown()) d = Dim::known(pin.dims[a]);  // a symbolic first axis: samples
    }
    pin.input->setType(std::move(type));
  }
  return specs.empty() ? Status::ok() : inferShapes(model);
}

StatusOr<std::string> setCountingSizes(Model& model, const std::vector<std::string>& specs,
                                       data::SampleReader* reader) {
  std::map<std::string, int64_t> sizes;
  std::string note;
  for (const std::string& spec : specs) {
    NNC_ASSIGN_OR_RETURN(const InputShape s, resolveInputShape(model, spec));
    addSizes(*s.input, s.dims, sizes, note);
  }
  const std::vector<Value*> inputs = fedInputs(model);
  if (specs.empty() && reader && reader->size() > 0) {
    NNC_ASSIGN_OR_RETURN(const std::vector<Tensor> first, reader->readFeeds(0, 1));
    for (size_t i = 0; i < inputs.size() && i < first.size(); ++i)
      if (inputs[i]->type().shape && first[i].rank() == int(inputs[i]->type().shape->size()))
        addSizes(*inputs[i], first[i].shape(), sizes, note);
  }
  model.graph->setCountingSizes(std::move(sizes));
  return note;
}

}  // namespace nnc::cli
