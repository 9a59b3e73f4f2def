#pragma once
// Runs a model in ONNX Runtime (onnxruntime-node through tools/ort/run.js), the runtime users
// deploy with, so tests can check exported models against it.

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "nncompress/data/npy.h"
#include "test_util.h"

namespace nnc::testing {

inline bool ortAvailable() {
  return std::filesystem::exists(sourcePath("node_modules/onnxruntime-node/package.json"));
}

// Returns the outputs in the model's output order; on failure, an error naming ORT's message.
inline StatusOr<std::vector<Tensor>> runOrt(
    const std::filesystem::path& model, const std::vector<std::pair<std::string, Tensor>>& inputs,
    const TempDir& dir) {
  static int counter = 0;
  const auto work = dir / ("ort_" + std::to_string(counter++));
  std::filesystem::create_directories(work);
  std::string cmd = "node " + quote(sourcePath("tools/ort/run.js")) + " " + quote(model);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto file = work / ("in" + std::to_string(i) + ".npy");
    Status s = data::writeNpy(file.string(), inputs[i].second);
    if (!s.isOk()) return s;
    cmd += " --input " + inputs[i].first + "=" + quote(file);
  }
  cmd += " --out-dir " + quote(work / "out") + " > " + quote(work / "stdout") + " 2> " +
         quote(work / "stderr");
  if (std::system(cmd.c_str()) != 0)
    return internalError("onnxruntime failed on " + model.string() + ": " +
                         readText(work / "stderr"));
  auto j = nlohmann::json::parse(readText(work / "stdout"), nullptr, false);
  if (j.is_discarded()) return internalError("unreadable run.js output");
  std::vector<Tensor> outputs;
  for (const auto& o : j["outputs"]) {
    auto t = data::readNpy(o["file"].get<std::string>());
    if (!t.isOk()) return t.status();
    outputs.push_back(std::move(t).value());
  }
  return outputs;
}

// Largest |a - b| relative to max |b| (1 when shapes differ).
inline double relativeMaxError(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != DType::kFloat32 || b.dtype() != DType::kFloat32)
    return 1.0;
  double max_diff = 0, max_ref = 0;
  const auto x = a.data<float>(), y = b.data<float>();
  for (size_t i = 0; i < x.size(); ++i) {
    max_diff = std::max(max_diff, std::abs(double(x[i]) - y[i]));
    max_ref = std::max(max_ref, std::abs(double(y[i])));
  }
  return max_ref > 0 ? max_diff / max_ref : max_diff;
}

}  // namespace nnc::testing
