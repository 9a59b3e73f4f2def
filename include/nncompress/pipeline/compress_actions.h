#pragma once
// The real actions behind the compress controller (compress.h): contribution-driven pruning with
// least-squares recovery, QDQ quantization with per-layer weight bits, quality measured on data
// (top-1 accuracy with labels; without, top-1 agreement with the original, or the outputs'
// fidelity to it when none holds class scores), size as written.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nncompress/data/dataset.h"
#include "nncompress/pipeline/compress.h"
#include "nncompress/pipeline/evaluate.h"
#include "nncompress/pipeline/finetune.h"

namespace nnc {

struct CompressSetup {
  const Model* original = nullptr;
  data::SampleReader* eval_data = nullptr;  // quality is measured on its first eval_size samples
  const std::vector<int64_t>* labels = nullptr;  // nullptr: agreement with the original
  // Where each output holds its classes (quality refuses a model without class scores).
  std::vector<EvalOptions::Classes> classes;
  // Without labels: quality is EvalResult::fidelity, not agreement (chooseQuality sets it).
  bool fidelity = false;
  int64_t eval_size = -1;  // -1: all
  // Clear failures are screened on this many samples first (0: no screening); only used when
  // the evaluation set is at least twice as large.
  int64_t quick_size = 2000;
  data::SampleReader* calib_data = nullptr;  // criteria statistics, recovery, activation ranges
  int64_t calib_size = 512;
  int64_t batch = 64;
  int threads = 0;
  std::string criterion = "contribution";
  std::string recovery = "lsq";  // none | bn | lsq
  std::string calib_method = "percentile";
  double min_group_keep = 0.1;  // every group keeps at least this share of its channels
  std::vector<std::string> exclude;
  bool exact_only = false;  // approximate channel groups stay whole
  // The written file keeps node and value names (otherwise short generated names, as quantize).
  bool keep_names = false;
  // Retraining (compress --finetune): distillation from the original on all of calib_data.
  std::optional<FinetuneOptions> finetune;
  bool qat = false;  // also retrain low-bit plans with fake-quantized weights (needs finetune)
  // AdaRound the low-bit layers of the chosen configuration (CompressActions::learned_rounding).
  bool learned_rounding = true;
  // Called after each evaluated batch (samples done, total) of every quality measurement.
  std::function<void(int64_t, int64_t)> eval_progress;
  // Bytes of a model as a file (the CLI hands in onnx_io's serializer; pipeline does not see it).
  std::function<StatusOr<int64_t>(const Model&)> serialized_size;
};

// The form compress writes (and whose size it measures): `model` compacted (Constants as shared
// initializers, default attributes dropped, short names unless keep_names). Computes exactly what
// `model` computes: weights and biases keep their storage type.
StatusOr<Model> exportedForm(const Model& model, bool keep_names);

// Without labels, a model none of whose outputs holds class scores (a regressor's [N, 1]: its
// top-1 would always agree) is measured by fidelity; one sample of eval_data tells. `force`
// ("agreement" or "fidelity") decides instead ("auto": does not); with labels it is refused.
Status chooseQuality(CompressSetup& setup, const std::string& force = "auto");

// "accuracy", "agreement" or "fidelity".
const char* qualityName(const CompressSetup& setup);

// The actions hold caches (calibrated ranges per float model, reference outputs); `setup` and
// everything it points to must outlive them.
StatusOr<CompressActions> makeCompressActions(const CompressSetup& setup);

}  // namespace nnc
