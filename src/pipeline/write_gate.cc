#include "nncompress/pipeline/write_gate.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <memory>
#include <optional>
#include <unordered_map>

#include "nncompress/analysis/channel_groups.h"
#include "nncompress/exec/executor.h"
#include "nncompress/exec/shape_probe.h"
#include "nncompress/ir/float16.h"

namespace nnc {

namespace {

std::string nodeLabel(const Node& n) {
  return "node '" +
         (!n.name().empty() ? n.name()
          : n.output(0)     ? n.output(0)->name()
                            : "?") +
         "' (" + n.opType() + ")";
}

std::string dimsText(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
}

// ---- step 3: one run on a sample input ----

// Deterministic values in [0, 1): image-like, and safe for Log/Sqrt/Pow that follow. Integer and
// bool inputs (token ids, attention masks) are all 1: a valid index into any table of two or
// more rows, and a mask that keeps every position (all 0 masks everything out, and a masked mean
// divides by 0: the sample's outputs would be NaN and prove nothing).
void fillSample(Tensor& t, uint64_t seed) {
  const DType d = t.dtype();
  if ((isInteger(d) && dtypeBits(d) >= 8) || d == DType::kBool) {
    const size_t width = static_cast<size_t>(dtypeBits(d) / 8);
    std::string& bytes = t.mutableBytes();
    for (size_t i = 0; i + width <= bytes.size(); i += width) bytes[i] = 1;  // little-endian 1
    return;
  }
  if (d != DType::kFloat32) return;  // other float types stay zero
  uint64_t state = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (float& v : t.mutableData<float>()) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    v = static_cast<float>((state >> 40) & 0xFFFFFF) / float(1 << 24);
  }
}

std::optional<int64_t> firstNonFinite(const Tensor& t) {
  if (t.dtype() != DType::kFloat32) return std::nullopt;
  const auto values = t.data<float>();
  for (size_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i])) return static_cast<int64_t>(i);
  return std::nullopt;
}

std::string outputLabel(const Value& v) {
  return "output '" + v.name() + "'" + (v.producer() ? " of " + nodeLabel(*v.producer()) : "");
}

// Inputs for one sample run: declared dims, unknown ones 1 on the first axis (batch) and 64
// elsewhere. Empty with `why_not` set when an input has no known rank.
std::vector<Tensor> sampleInputs(const exec::Executor& executor, bool* guessed,
                                 std::string* why_not) {
  std::vector<Tensor> inputs;
  for (const Value* in : executor.inputs()) {
    if (!in->type().shape) {
      *why_not = "input '" + in->name() + "' has no known rank";
      return {};
    }
    Shape shape;
    for (size_t axis = 0; axis < in->type().shape->size(); ++axis) {
      const Dim& d = (*in->type().shape)[axis];
      *guessed = *guessed || !d.isKnown();
      shape.push_back(d.isKnown() ? d.value : axis == 0 ? 1 : 64);
    }
    inputs.emplace_back(in->dtype(), shape);
    fillSample(inputs.back(), inputs.size());
  }
  return inputs;
}

// The executor for a sample run, or nullptr with the reason in `why_not`.
std::unique_ptr<exec::Executor> sampleExecutor(const Model& model,
                                               const exec::ExecutorOptions& options,
                                               std::string* why_not) {
  const std::vector<std::string> missing = exec::unsupportedOps(model);
  if (!missing.empty()) {
    std::string list;
    for (const auto& op : missing) list += (list.empty() ? "" : ", ") + op;
    *why_not = "our executor has no kernel for " + list;
    return nullptr;
  }
  auto executor = exec::Executor::create(model, options);
  if (!executor.isOk()) {
    *why_not = executor.status().message();
    return nullptr;
  }
  return std::move(executor).value();
}

// The reference's outputs on `inputs` (the output's sample), for telling a wrong output from
// a bad choice of dims or an input the model itself cannot take; nullopt when it cannot run.
std::optional<std::vector<Tensor>> referenceOutputs(const Model* reference,
                                                    std::vector<Tensor> inputs) {
  if (!reference) return std::nullopt;
  std::string why_not;
  exec::ExecutorOptions options;
  options.fuse = false;
  auto executor = sampleExecutor(*reference, options, &why_not);
  if (!executor || executor->inputs().size() != inputs.size()) return std::nullopt;
  auto outputs = executor->run(std::move(inputs));
  if (!outputs.isOk()) return std::nullopt;
  return std::move(outputs).value();
}

// The sample is ours (unknown dims, and the values of every input, shape tensors included), so
// what goes wrong on it is a finding only if the model the output was made from does not show
// the same on the same sample: it fails too, gives the same output shape, or non-finite values.
struct ReferenceSource {
  const Model* model = nullptr;
  std::function<StatusOr<Model>()> load;  // when model is null
  bool given() const { return model != nullptr || static_cast<bool>(load); }
};

class ReferenceRun {
 public:
  ReferenceRun(const ReferenceSource& reference, std::vector<Tensor> inputs)
      : reference_(reference), inputs_(std::move(inputs)) {}
  bool given() const { return reference_.given(); }
  // The reference's outputs on the same sample (run once, on first use); nullptr if it fails.
  const std::vector<Tensor>* outputs() {
    if (ran_) return outputs_ ? &*outputs_ : nullptr;
    ran_ = true;
    const Model* model = reference_.model;
    if (!model && reference_.load) {
      auto loaded = reference_.load();
      if (loaded.isOk()) loaded_ = std::move(loaded).value();
      model = loaded_ ? &*loaded_ : nullptr;
    }
    outputs_ = referenceOutputs(model, std::move(inputs_));
    return outputs_ ? &*outputs_ : nullptr;
  }

 private:
  ReferenceSource reference_;
  std::optional<Model> loaded_;
  std::vector<Tensor> inputs_;
  bool ran_ = false;
  std::optional<std::vector<Tensor>> outputs_;
};

bool declaredShapeAgrees(const Value& v, const Tensor& got) {
  if (!v.type().shape) return true;
  const auto& dims = *v.type().shape;
  bool agrees = dims.size() == got.shape().size();
  for (size_t k = 0; agrees && k < dims.size(); ++k)
    agrees = !dims[k].isKnown() || dims[k].value == got.shape()[k];
  return agrees;
}

Status checkSampleOutput(const Value& v, const Tensor& got, size_t i, ReferenceRun& ref,
                         WriteGateReport& report) {
  if (!declaredShapeAgrees(v, got)) {
    const auto* want = ref.outputs();
    if (want && i < want->size() && (*want)[i].shape() == got.shape()) {
      report.notes.push_back(outputLabel(v) + ": on the sample input its declared type " +
                             v.type().toString() +
                             " disagrees with the run, as in the input model");
    } else {
      return internalError(outputLabel(v) + ": the sample run gives " + dimsText(got.shape()) +
                           " but its type says " + v.type().toString() +
                           (want && i < want->size()
                                ? " (the input model gives " + dimsText((*want)[i].shape()) + ")"
                                : ""));
    }
  }
  if (auto at = firstNonFinite(got)) {
    const auto* want = ref.outputs();
    if (want && i < want->size() && firstNonFinite((*want)[i])) {
      report.notes.push_back(outputLabel(v) +
                             " is non-finite on the sample input, as the input model's is");
      return Status::ok();
    }
    return internalError(outputLabel(v) + ": the sample run gives a non-finite value at " +
                         std::to_string(*at));
  }
  return Status::ok();
}

Status runSample(const Model& written, const ReferenceSource& reference, WriteGateReport& report) {
  // Our executor computes in float32: a float16 model is sampled as its float32 promotion, as
  // the commands loaded its input (cli loadInputModel).
  std::optional<Model> promoted;
  if (computesInFloat16(written)) {
    promoted = written.clone();
    promoteFloat16(*promoted);
  }
  const Model& model = promoted ? *promoted : written;
  std::string why_not;
  // Unfused: the fused plan folds BatchNorms into copies of the conv weights (peak memory).
  exec::ExecutorOptions options;
  options.fuse = false;
  auto executor = sampleExecutor(model, options, &why_not);
  bool guessed = false;
  std::vector<Tensor> inputs;
  if (executor) inputs = sampleInputs(*executor, &guessed, &why_not);
  if (!why_not.empty()) {
    report.notes.push_back("no sample run: " + why_not);
    return Status::ok();
  }
  ReferenceRun ref(reference, reference.given() ? inputs : std::vector<Tensor>{});  // one sample
  auto outputs = executor->run(std::move(inputs));
  if (!outputs.isOk()) {
    // The sample may be a bad choice (a pooling window larger than the input, a shape tensor
    // of zeros), unless the model the output was made from runs on it.
    if (ref.given() ? ref.outputs() == nullptr : guessed) {
      report.notes.push_back("no sample run: the input model cannot run the sample either: " +
                             outputs.status().message());
      return Status::ok();
    }
    return internalError(
        "sample run failed" +
        std::string(ref.given() ? " (the input model runs on the same input)" : "") + ": " +
        outputs.status().message());
  }
  report.sample_run = true;
  const auto& declared = executor->outputs();
  for (size_t i = 0; i < declared.size() && i < outputs->size(); ++i)
    NNC_RETURN_IF_ERROR(checkSampleOutput(*declared[i], (*outputs)[i], i, ref, report));
  return Status::ok();
}

}  // namespace

Status convertModelOpset(Model& model, int64_t target, const ModelFormat& format) {
  exec::completeShapesByRunning(model);
  return format.convertOpset(model, target);
}

namespace {

Status checkBeforeWrite(const Model& model, const ModelFormat& format,
                        const ReferenceSource& reference, WriteGateReport& r) {
  const auto start = std::chrono::steady_clock::now();
  auto gateError = [](const Status& s) { return internalError("validation gate: " + s.message()); };
  if (Status s = format.checkShapeInputs(model); !s.isOk()) return gateError(s);
  if (Status s = format.checkWeightChannels(model); !s.isOk()) return gateError(s);
  if (Status s = checkChannelParameters(model); !s.isOk()) return gateError(s);
  const auto sample_start = std::chrono::steady_clock::now();
  if (Status s = runSample(model, reference, r); !s.isOk()) return gateError(s);
  const auto end = std::chrono::steady_clock::now();
  spdlog::debug("validation gate: IR checks {:.3f} s, sample run {:.3f} s",
                std::chrono::duration<double>(sample_start - start).count(),
                std::chrono::duration<double>(end - sample_start).count());
  r.seconds += std::chrono::duration<double>(end - start).count();
  return Status::ok();
}

}  // namespace

Status checkModelBeforeWrite(const Model& model, const ModelFormat& format, const Model* reference,
                             WriteGateReport* report) {
  WriteGateReport local;
  return checkBeforeWrite(model, format, {reference, {}}, report ? *report : local);
}

Status writeValidatedModel(Model& model, const std::filesystem::path& path,
                           const ModelFormat& format, const SaveOptions& options,
                           const WriteGateOptions& gate, WriteGateReport* report) {
  WriteGateReport local;
  WriteGateReport& r = report ? *report : local;
  const int64_t opset = model.opsetVersion("");
  if (opset > 0) model.ir_version = std::max(model.ir_version, format.irVersionForOpset(opset));
  NNC_RETURN_IF_ERROR(checkBeforeWrite(model, format, {gate.reference, gate.load_reference}, r));
  SaveOptions save = options;
  save.validate = true;
  save.validation_notes = &r.notes;
  double proto_seconds = 0;
  save.validation_seconds = &proto_seconds;
  Status saved = format.save(model, path, save, gate.consume);
  r.seconds += proto_seconds;
  if (saved.code() == StatusCode::kInternal)
    return internalError("validation gate: " + saved.message());
  NNC_RETURN_IF_ERROR(saved);
  for (const auto& note : r.notes) spdlog::info("validation gate: {}", note);
  spdlog::debug("validation gate: ONNX checker + strict inference {:.3f} s; gate total {:.3f} s",
                proto_seconds, r.seconds);
  return Status::ok();
}

}  // namespace nnc
