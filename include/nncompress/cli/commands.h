#pragma once
// One function per subcommand, taking plain option structs (CLI11 stays in app.cc).

#include <filesystem>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "nncompress/ir/graph.h"
#include "nncompress/ir/status.h"
#include "nncompress/onnx_io/model_io.h"

namespace nnc::cli {

struct ReportOptions {
  std::string model_path;
  bool json = false;
  bool prunable = false;  // add channel groups and barriers
  std::string html_path;  // --report out.html (always includes the channel groups)
  // --input-shape [NAME=]DxDx...: count at these input dims instead of symbolic ones.
  std::vector<std::string> input_shapes;
};
Status runReport(const ReportOptions& options);

}  // namespace nnc::cli

namespace nnc::cli {

struct ConvertOptions {
  std::string model_path;
  std::string output_path;
  int64_t external_data_threshold = 0;  // bytes; 0 keeps all weights inside the .onnx
  int64_t opset = 0;                    // --opset N: convert to this opset; 0 keeps it
  bool strict = true;                   // --no-strict: contradicting shapes only warn
  bool json = false;
};
// Load and re-export (normalising the file, or moving weights to/from external data).
Status runConvert(const ConvertOptions& options);

// Refuses an output path that is the input itself (nncompress never overwrites its input).
Status checkOutputIsNotInput(const std::string& input, const std::string& output);

// An output file of a command and the flag that names it in errors ("-o", "--report").
struct OutputPath {
  std::string flag;
  std::string path;  // empty: not asked for (skipped)
};
// Checks every output path before any work: none is the input and no two are the same file
// (kInvalidArgument, exit 2), and each one's directory exists and is writable (kIoError, exit 4).
Status checkOutputPaths(const std::string& input, const std::vector<OutputPath>& outputs);

// The model a command writes, removed again (with the OUT.data this command wrote) unless kept:
// a command that fails after writing its model (e.g. its --report) leaves nothing on disk.
class WrittenModel {
 public:
  explicit WrittenModel(std::string path);
  ~WrittenModel();
  WrittenModel(const WrittenModel&) = delete;
  WrittenModel& operator=(const WrittenModel&) = delete;
  // writeOutputModel to the path.
  Status write(Model& model, const LoadedModelInfo& input, const Model* reference,
               const SaveOptions& options = {},
               std::function<StatusOr<Model>()> load_reference = {});
  // Every other output is written: the model stays.
  void keep() { kept_ = true; }

 private:
  std::string dataPath() const { return path_ + ".data"; }
  std::string path_;
  std::optional<std::filesystem::file_time_type> data_time_before_;
  bool written_ = false;
  bool kept_ = false;
};

// Loads a model for a command: strict (declared shapes that contradict the weights, or
// per-channel parameters whose length is not their channel count, refuse the model, exit 3) or,
// with --no-strict, a warning (LoadedModelInfo::strict_finding). Errors carry the path.
// Shapes ONNX inference left unknown are completed by running the model (exec/shape_probe.h).
// A model that computes in float16 is promoted to float32 (ir/float16.h, recorded in
// info->float16) unless `promote_float16` is false; writeOutputModel writes it back.
StatusOr<Model> loadInputModel(const std::string& path, bool strict, LoadedModelInfo* info,
                               bool promote_float16 = true);

// Completes shapes ONNX inference left unknown by running the model, logging what it did.
void completeUnknownShapes(Model& model, const std::string& path);

// Validates and writes a command's output (pipeline/write_gate.h): a gate failure is exit 5,
// A float16 input (input.float16) is written back first: float16 again where it can be, else
// float32 inside with its float16 inputs and outputs kept by Casts.
// or exit 3 when the input already failed strict loading (--no-strict). Errors carry the path.
// `reference`: the model the output was made from (see WriteGateOptions).
// `load_reference`: when `reference` is null, loads it if the gate needs it.
Status writeOutputModel(Model& model, const std::string& path, const LoadedModelInfo& input,
                        const Model* reference, const SaveOptions& options = {},
                        std::function<StatusOr<Model>()> load_reference = {});

// Converts the model to `needed` when its opset is lower (ONNX's version converter), logging
// it; `converted_from` receives the old opset then (0 when nothing was converted).
Status raiseOpsetTo(Model& model, int64_t needed, const std::string& why, int64_t* converted_from);

}  // namespace nnc::cli

namespace nnc::cli {

// --data SPEC and the preprocessing flags shared by every command that reads data.
struct DataOptions {
  // One SPEC for a model with one input; NAME=SPEC per input for a model with several.
  std::vector<std::string> data;
  std::string labels;
  std::string range;                        // "A:B": samples A..B-1 of data and labels
  std::string range_flag = "--data-range";  // how `range` is spelled in errors
  std::string scale, mean, std, size, center_crop, channels;
  // An image folder's subfolders are classes (--data), or just folders (--calib: every image
  // under it, recursively, unlabelled).
  bool unlabelled = false;
};

struct EvalCommandOptions {
  std::string model_path;
  DataOptions data;
  std::string reference_path;
  int64_t limit = -1;
  int64_t batch = 32;
  int threads = 0;
  bool strict = true;  // refuse models whose declared shapes contradict their weights
  bool json = false;
};
Status runEval(const EvalCommandOptions& options);

struct RunCommandOptions {
  std::string model_path;
  DataOptions data;
  std::string output_dir;
  int64_t limit = -1;
  int64_t batch = 32;
  int threads = 0;
  bool strict = true;  // refuse models whose declared shapes contradict their weights
  bool json = false;
};
Status runRun(const RunCommandOptions& options);

}  // namespace nnc::cli

namespace nnc::cli {

struct QuantizeCommandOptions {
  std::string model_path;
  std::string output_path;
  std::string format = "qdq";
  std::string qdq_placement = "ort";  // ort | tensorrt
  int weight_bits = 8;
  int act_bits = 8;
  bool per_tensor = false;
  bool symmetric_activations = false;
  DataOptions calib;  // calib.data is --calib SPEC
  int64_t calib_size = 512;
  std::string calib_method = "minmax";
  double percentile = 99.99;
  int64_t block_size = 64;
  bool bias_correction = false;
  bool equalize = false;
  bool quantize_last = false;
  bool keep_names = false;    // keep node/value names (default: short generated names)
  bool fp32_storage = false;  // biases and scales as float32 (default: float16 + Cast)
  std::vector<std::string> exclude;
  std::string rounding = "balanced";  // "nearest", or "adaround" (learned on --calib samples)
  bool auto_exclude = true;           // keep the most harmful layers float until --min-sqnr holds
  // dB, model output against float on calibration samples; NaN (not given): 30 with 8-bit
  // weights and activations, auto-exclude off at lower bits (the user asked for the loss).
  double min_sqnr = std::numeric_limits<double>::quiet_NaN();
  int64_t sqnr_samples = 256;
  int threads = 0;
  std::string html_report;  // --report out.html
  bool strict = true;
  bool json = false;
};
Status runQuantize(const QuantizeCommandOptions& options);

struct PruneOptions {
  std::string model_path;
  std::string output_path;
  std::string method = "l1";
  // Exactly one target (negative: not given).
  double ratio = -1;          // fraction of channels to remove
  double target_macs = -1;    // fraction of MACs to keep
  double target_params = -1;  // fraction of params to keep
  std::string allocation = "uniform";
  std::string sensitivity_rule = "cost";
  double floor = 0.1;
  int64_t round_to = 1;
  std::vector<std::string> exclude;
  bool exact_only = false;  // --exact-only: approximate groups stay whole
  uint64_t seed = 0;
  double alpha = 0.5;
  std::string chain_importance = "l2";
  std::string chain_distance = "weights";
  bool merge = false;
  DataOptions data;  // calibration samples (data-driven methods, sensitivity, recovery)
  int64_t calib_size = 1024;
  int64_t batch = 64;
  int threads = 0;
  std::string recover = "none";
  int finetune_epochs = 0;                     // --finetune E: distil from the unpruned model
  std::string finetune_loss = "auto";          // --finetune-loss: finetune's --loss
  int steps = 1;                               // prune in N steps, recovering after each
  std::string recover_reference = "original";  // original | previous (steps > 1)
  double ridge = 1e-3;                         // least-squares ridge (relative)
  std::string html_report;                     // --report out.html
  std::vector<std::string> input_shapes;       // --input-shape: MACs at these input dims
  bool strict = true;
  bool json = false;
};
Status runPrune(const PruneOptions& options);

struct CompressCommandOptions {
  std::string model_path;
  std::string output_path;
  DataOptions data;  // --data/--labels: quality is measured on the first eval_size samples
  std::vector<std::string> calib;  // --calib SPEC (NAME=SPEC per input): default --data
  std::string calib_range;  // --calib-range A:B of --calib (default: --data-range with --data)
  double max_accuracy_drop = -1;  // percentage points
  std::string quality = "auto";   // --quality: auto, agreement or fidelity (without labels)
  std::string target_size;        // BYTES[K|M|G|KiB|MiB|GiB] or RATIO (0.1, 10x)
  std::string recipe;             // replay this recipe instead of searching
  std::string save_recipe;        // write the recipe of the result here
  std::string html_report;
  bool keep_best = false;
  bool keep_names = false;  // keep node/value names in the written file
  bool dry_run = false;
  bool json = false;
  int64_t eval_size = -1;  // samples of --data used to measure quality; -1: all
  int64_t calib_size = 512;
  int64_t batch = 64;
  int threads = 0;
  std::string method = "contribution";
  std::string recover = "lsq";
  std::string calib_method = "percentile";
  double step = 0.1;
  std::vector<std::string> exclude;
  bool exact_only = false;
  bool no_prune = false;
  bool no_quantize = false;
  int finetune_epochs = 0;             // --finetune E: retrain between pruning and quantization
  std::string finetune_loss = "auto";  // --finetune-loss: finetune's --loss
  bool qat = false;  // --qat: fake-quant retraining of the layers lowered to 4 bits
  std::string rounding = "adaround";  // of the 4-bit layers: adaround or balanced
  double retrain_slack = 3;  // points pruning may lose beyond the demand when retraining follows
  bool strict = true;
};
Status runCompress(const CompressCommandOptions& options);

// Training settings shared by finetune and prune/compress --finetune.
struct TrainSettings {
  int64_t batch = 64;
  double lr = -1;  // <= 0: 1e-3 for adamw, 1e-2 for sgd
  std::string optimizer = "adamw";
  double weight_decay = 1e-4;
  // 2, not METHODS.md's 4: better on held-out training images (tools/finetune_variants.sh)
  double temperature = 2.0;
  std::string loss = "auto";  // auto (KL for a classifier, else MSE), kl or mse
  double label_weight = 0.5;
  double max_grad_norm = 5.0;
  double warmup = 0.03;  // share of the steps
  uint64_t seed = 0;
  int threads = 0;
  bool reestimate_bn = true;
  double ema = 0;         // weight-average decay (0: none)
  int augment_shift = 0;  // pixels
  bool augment_flip = false;
  double teacher_label_weight = 0;      // CE on the teacher's arg-max without labels
  std::string grad_precision = "bf16";  // Conv weight gradients: bf16 products or fp32
};

struct FinetuneCommandOptions {
  std::string model_path;
  std::string output_path;
  std::string teacher_path;
  DataOptions data;  // training samples (--labels optional)
  std::string val, val_labels, val_range;
  int epochs = 1;
  TrainSettings train;
  std::string checkpoint_dir;
  bool strict = true;
  bool json = false;
};
Status runFinetune(const FinetuneCommandOptions& options);

}  // namespace nnc::cli
