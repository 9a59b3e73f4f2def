#include "nncompress/cli/app.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "nncompress/cli/commands.h"
#include "nncompress/data/dataset.h"
#include "nncompress/data/preprocess.h"

#ifndef NNC_VERSION
#define NNC_VERSION "dev"
#endif

namespace nnc::cli {

int exitCodeFor(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk:
      return kExitOk;
    case StatusCode::kTargetNotMet:
      return kExitTargetNotMet;
    case StatusCode::kInvalidArgument:
      return kExitUsage;
    case StatusCode::kInvalidModel:
    case StatusCode::kUnsupported:
    case StatusCode::kShapeMismatch:
      return kExitInvalidModel;
    case StatusCode::kIoError:
      return kExitIo;
    case StatusCode::kInternal:
      return kExitInternal;
  }
  return kExitInternal;
}

namespace {

constexpr const char* kExitCodeHelp =
    "Exit codes: 0 ok; 1 a requested target could not be met; 2 usage error; 3 invalid or "
    "unsupported model; 4 I/O error; 5 internal error (a bug: please report).";

void setUpLogging(int verbosity) {
  auto logger = spdlog::stderr_color_mt("nncompress");
  logger->set_pattern("nncompress: %^%l%$: %v");
  logger->set_level(verbosity < 0    ? spdlog::level::err
                    : verbosity == 0 ? spdlog::level::info
                                     : spdlog::level::debug);
  spdlog::set_default_logger(logger);
}

// --no-strict: a model whose declared shapes contradict its weights loads with a warning.
void addStrictFlag(CLI::App* cmd, bool& strict) {
  cmd->add_flag_callback(
      "--no-strict", [&strict] { strict = false; },
      "Load a model whose declared shapes contradict its weights or strict ONNX shape "
      "inference with a warning instead of refusing it (exit 3)");
}

void addPreprocessFlags(CLI::App* cmd, DataOptions& d);

// Data flags are checked when the command line is parsed: a typo is a usage error before any
// model is loaded or converted.
CLI::Validator preprocessCheck(const char* name) {
  return CLI::Validator(
      [name](std::string& value) -> std::string {
        data::Preprocess p;
        const Status s = data::setPreprocessOption(p, name, value);
        if (s.isOk()) return {};
        // CLI11 names the flag itself: "--size: '64,64': expected HxW ...".
        const std::string flag = "--" + std::string(name) + " ";
        const std::string& m = s.message();
        return m.rfind(flag, 0) == 0 ? m.substr(flag.size()) : m;
      },
      "", name);
}

const CLI::Validator& rangeCheck() {
  static const CLI::Validator check(
      [](std::string& value) -> std::string {
        const auto range = data::parseDataRange(value);
        return range.isOk() ? std::string() : range.status().message();
      },
      "", "range");
  return check;
}

void addDataOptions(CLI::App* cmd, DataOptions& d, bool with_labels, bool required = true) {
  cmd->add_option(
         "--data", d.data,
         "Input samples: IDX file (.gz too), .npy, folder of TensorProto .pb, or image folder "
         "(docs/data-spec.md); NAME=SPEC for each input of a model with several (repeat)")
      ->required(required)
      ->allow_extra_args(false);
  if (with_labels)
    cmd->add_option("--labels", d.labels, "Labels: IDX, .npy, text file (one integer per line)");
  cmd->add_option("--data-range", d.range,
                  "Use samples A..B-1 of --data (and of --labels): A:B, A: or :B (e.g. "
                  "50000:60000, training images held out for validation)")
      ->check(rangeCheck());
  addPreprocessFlags(cmd, d);
}

// The preprocessing flags every command that reads samples shares (docs/data-spec.md).
void addPreprocessFlags(CLI::App* cmd, DataOptions& d) {
  cmd->add_option("--scale", d.scale,
                  "Multiply raw values (default 1/255 for 8-bit data, 1 for float)")
      ->check(preprocessCheck("scale"));
  cmd->add_option("--mean", d.mean, "Subtract after scaling: m or m,m,m")
      ->check(preprocessCheck("mean"));
  cmd->add_option("--std", d.std, "Divide after the mean: s or s,s,s")
      ->check(preprocessCheck("std"));
  cmd->add_option("--size", d.size, "Resize images to HxW (or N: shorter side)")
      ->check(preprocessCheck("size"));
  cmd->add_option("--center-crop", d.center_crop, "Crop HxW from the center after resizing")
      ->check(preprocessCheck("center-crop"));
  cmd->add_option("--channels", d.channels, "rgb, bgr or grey")->check(preprocessCheck("channels"));
}

// Training flags of finetune (prune/compress --finetune use the defaults and their --seed).
void addTrainSettings(CLI::App* cmd, TrainSettings& t) {
  cmd->add_option("--batch", t.batch, "Training batch size")->capture_default_str();
  cmd->add_option("--lr", t.lr, "Peak learning rate (default 1e-3 for adamw, 1e-2 for sgd)");
  cmd->add_option("--optimizer", t.optimizer, "sgd (momentum 0.9) or adamw")
      ->check(CLI::IsMember({"sgd", "adamw"}))
      ->capture_default_str();
  cmd->add_option("--weight-decay", t.weight_decay, "Weight decay (weights only)")
      ->capture_default_str();
  cmd->add_option("--temperature", t.temperature, "Distillation temperature T")
      ->capture_default_str();
  cmd->add_option("--loss", t.loss,
                  "Distillation loss: kl (softened logits), mse (each output's squared error over "
                  "the teacher's variance) or auto (kl for one [N, K] output or on the logits of "
                  "a final Softmax, else mse)")
      ->check(CLI::IsMember({"auto", "kl", "mse"}))
      ->capture_default_str();
  cmd->add_option("--label-weight", t.label_weight, "Weight of the cross-entropy with --labels")
      ->capture_default_str();
  cmd->add_option("--clip-grad-norm", t.max_grad_norm, "Gradient-norm clipping (0: none)")
      ->capture_default_str();
  cmd->add_option("--warmup", t.warmup, "Share of the steps spent warming up the learning rate")
      ->capture_default_str();
  cmd->add_option("--seed", t.seed, "Seed of the sample order")->capture_default_str();
  cmd->add_option("--threads", t.threads, "Threads (0: every core)");
  cmd->add_flag_callback(
      "--no-bn-reestimate", [&t] { t.reestimate_bn = false; },
      "Keep the BatchNorm statistics as trained (default: re-estimated on the data afterwards)");
  cmd->add_option("--ema", t.ema,
                  "Keep an exponential moving average of the weights with this decay (0: none)")
      ->capture_default_str();
  cmd->add_option("--augment-shift", t.augment_shift,
                  "Shift each image by up to PX pixels (teacher and student see the same image)")
      ->capture_default_str();
  cmd->add_flag("--augment-flip,!--no-augment-flip", t.augment_flip,
                "Mirror images left-right at random (teacher and student see the same image)")
      ->capture_default_str();
  cmd->add_option("--teacher-label-weight", t.teacher_label_weight,
                  "Without --labels: weight of a cross-entropy on the teacher's top class")
      ->capture_default_str();
  cmd->add_option("--grad-precision", t.grad_precision,
                  "Conv gradients: bf16 products with float32 sums (twice as fast where "
                  "the CPU has AVX-512 BF16; float32 elsewhere) or fp32")
      ->check(CLI::IsMember({"bf16", "fp32"}))
      ->capture_default_str();
}

// --finetune-loss of prune and compress: finetune's --loss for their retraining.
void addFinetuneLossFlag(CLI::App* cmd, std::string& loss) {
  cmd->add_option("--finetune-loss", loss,
                  "With --finetune: the distillation loss, as finetune's --loss (mse for a "
                  "regression output; it ignores --labels)")
      ->check(CLI::IsMember({"auto", "kl", "mse"}))
      ->capture_default_str();
}

// The flag of `command` that sets library option `option` (an options field such as
// "round_to"), or "" when the command has none.
std::string flagFor(const CLI::App& command, const std::string& option) {
  // Options whose flag is not the field name with dashes, or that several flags set.
  static const std::map<std::string, std::vector<std::string>> kFlags = {
      {"calibration", {"--data", "--calib"}},
      {"placement", {"--qdq-placement"}},
      {"learning_rate", {"--lr"}},
      {"checkpoint_dir", {"--checkpoint"}},
      {"external_data_threshold", {"--external-data"}},
  };
  std::string dashed = "--" + option;
  std::replace(dashed.begin(), dashed.end(), '_', '-');
  const auto listed = kFlags.find(option);
  for (const std::string& flag :
       listed != kFlags.end() ? listed->second : std::vector<std::string>{dashed})
    if (command.get_option_no_throw(flag) != nullptr) return flag;
  return "";
}

// Names the flag of the command that ran for an error about a library option: library errors
// say "<option>: <what is wrong>" (ir/option_error.h, the option an options field); only the CLI
// knows its flags, and it names one only when the command that ran has it.
Status namingFlag(const Status& status, const CLI::App& command) {
  if (status.code() != StatusCode::kInvalidArgument && status.code() != StatusCode::kUnsupported)
    return status;
  const std::string& message = status.message();
  std::string named;
  size_t start = 0;
  while (start <= message.size()) {  // each ": "-separated segment (a context may come first)
    size_t end = message.find(": ", start);
    if (end == std::string::npos) end = message.size();
    const std::string segment = message.substr(start, end - start);
    const bool identifier =
        !segment.empty() && std::all_of(segment.begin(), segment.end(),
                                        [](char c) { return std::islower(c) || c == '_'; });
    const std::string flag = identifier ? flagFor(command, segment) : "";
    named += flag.empty() ? segment : flag;
    if (end == message.size()) break;
    named += ": ";
    start = end + 2;
  }
  return Status(status.code(), named);
}

CLI::App* addReportCommand(CLI::App& app, ReportOptions& report) {
  CLI::App* report_cmd = app.add_subcommand(
      "report", "Inspect a model: inputs/outputs, ops, per-layer params and MACs, totals");
  report_cmd->add_option("MODEL", report.model_path, "The .onnx file to inspect")->required();
  report_cmd->add_flag("--json", report.json, "Print one JSON object (docs/report-json.md)");
  report_cmd->add_flag("--prunable", report.prunable,
                       "Also list prunable channel groups and why other layers are not prunable");
  report_cmd->add_option("--report", report.html_path,
                         "Also write a self-contained HTML report (charts, sortable tables) here");
  report_cmd->add_option("--input-shape", report.input_shapes,
                         "Count MACs at these input dims, e.g. 1x3x256x256 or input=1x3x256x256 "
                         "(NAME= needed for models with several inputs; repeatable)");
  report_cmd->footer(kExitCodeHelp);
  return report_cmd;
}

CLI::App* addConvertCommand(CLI::App& app, ConvertOptions& convert) {
  CLI::App* convert_cmd = app.add_subcommand(
      "convert", "Load and re-export a model (e.g. to move weights into external data)");
  convert_cmd->add_option("MODEL", convert.model_path, "The .onnx file to read")->required();
  convert_cmd->add_option("-o,--output", convert.output_path, "Where to write the model")
      ->required();
  convert_cmd
      ->add_option("--external-data", convert.external_data_threshold,
                   "Write tensors of at least this many bytes to OUT.data beside the model")
      ->check(CLI::NonNegativeNumber);
  convert_cmd
      ->add_option("--opset", convert.opset,
                   "Convert to this ai.onnx opset with ONNX's version converter (IR version "
                   "raised as the spec requires)")
      ->check(CLI::PositiveNumber);
  addStrictFlag(convert_cmd, convert.strict);
  convert_cmd->add_flag("--json", convert.json, "Print one JSON object");
  convert_cmd->footer(kExitCodeHelp);
  return convert_cmd;
}

// prune: the targets (--ratio, --target-macs, --target-params) and how they are allocated.
void addPruneTargetFlags(CLI::App* prune_cmd, PruneOptions& prune) {
  auto* ratio = prune_cmd
                    ->add_option("--ratio", prune.ratio,
                                 "Fraction of channels to remove (of each group with uniform "
                                 "allocation, of all prunable channels otherwise)")
                    ->check(CLI::Range(0.0, 0.999));
  auto* target_macs = prune_cmd
                          ->add_option("--target-macs", prune.target_macs,
                                       "Keep this fraction of the model's MACs (e.g. 0.5)")
                          ->check(CLI::Range(0.001, 1.0));
  auto* target_params = prune_cmd
                            ->add_option("--target-params", prune.target_params,
                                         "Keep this fraction of the model's parameters")
                            ->check(CLI::Range(0.001, 1.0));
  ratio->excludes(target_macs)->excludes(target_params);
  target_macs->excludes(target_params);
  prune_cmd
      ->add_option("--allocation", prune.allocation,
                   "How many channels each group keeps: uniform, global (ranking across groups), "
                   "sensitivity (measured per group on --data)")
      ->capture_default_str();
  prune_cmd
      ->add_option("--sensitivity-rule", prune.sensitivity_rule,
                   "sensitivity allocation: cost (least summed loss per MAC saved) or threshold "
                   "(one loss threshold for every group)")
      ->capture_default_str();
  prune_cmd
      ->add_option("--floor", prune.floor,
                   "Every group keeps at least this fraction of its channels (global, "
                   "sensitivity, MACs/params targets)")
      ->check(CLI::Range(0.0, 0.999))
      ->capture_default_str();
  prune_cmd->add_option("--round-to", prune.round_to, "Keep channel counts multiples of N")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  prune_cmd->add_option(
      "--input-shape", prune.input_shapes,
      "Count MACs at these input dims when the model's are symbolic, e.g. 1x3x256x256 or "
      "input=1x3x256x256 (default: --data's sample size; the written model keeps its "
      "symbolic dims)");
  prune_cmd->add_option("--exclude", prune.exclude, "Layer names whose channel groups stay whole");
  prune_cmd->add_flag("--exact-only", prune.exact_only,
                      "Prune only groups whose removal is output-preserving (not through a "
                      "LayerNorm over the channels)");
}

// prune: settings of the channel importance criteria.
void addPruneMethodFlags(CLI::App* prune_cmd, PruneOptions& prune) {
  prune_cmd->add_option("--seed", prune.seed, "Seed for --method random")->capture_default_str();
  prune_cmd
      ->add_option("--alpha", prune.alpha,
                   "activation: weight of activeness against substitutability")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  prune_cmd
      ->add_option("--chain-importance", prune.chain_importance,
                   "similarity-chain: criterion choosing the first unit to clip")
      ->capture_default_str();
  prune_cmd
      ->add_option("--chain-distance", prune.chain_distance,
                   "similarity-chain difference degree: weights or features (needs --data)")
      ->capture_default_str();
  prune_cmd->add_flag("--merge", prune.merge,
                      "similarity-chain: fold each removed unit into its nearest kept twin");
}

// prune: calibration data, recovery after pruning and fine-tuning.
void addPruneRecoveryFlags(CLI::App* prune_cmd, PruneOptions& prune) {
  addDataOptions(prune_cmd, prune.data, true, false);
  prune_cmd->add_option("--calib-size", prune.calib_size, "Calibration samples to use from --data")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  prune_cmd->add_option("--batch", prune.batch, "Calibration batch size")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  prune_cmd->add_option("--threads", prune.threads, "Worker threads (0: every core)");
  prune_cmd
      ->add_option("--recover", prune.recover,
                   "Recovery after pruning: none, bn (BatchNorm statistics), lsq (least-squares "
                   "reconstruction of the consumer layers), or several in order joined by '+' "
                   "(bn+lsq); bn and lsq need --data")
      ->capture_default_str();
  prune_cmd
      ->add_option("--steps", prune.steps,
                   "Reach the target in N steps, re-scoring and recovering after each")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  prune_cmd
      ->add_option("--recover-reference", prune.recover_reference,
                   "With --steps: least squares matches the original model (original) or the "
                   "previous step's (previous)")
      ->capture_default_str();
  prune_cmd
      ->add_option("--ridge", prune.ridge, "Least-squares ridge, relative to the Gram diagonal")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  prune_cmd->add_option("--finetune", prune.finetune_epochs,
                        "Then retrain for EPOCHS passes over --data by distillation from the "
                        "unpruned model (--labels optional)");
  addFinetuneLossFlag(prune_cmd, prune.finetune_loss);
}

CLI::App* addPruneCommand(CLI::App& app, PruneOptions& prune) {
  CLI::App* prune_cmd = app.add_subcommand("prune",
                                           "Remove convolution channels (whole channel groups stay "
                                           "consistent) and write a smaller model");
  prune_cmd->add_option("MODEL", prune.model_path, "The .onnx file to prune")->required();
  prune_cmd->add_option("-o,--output", prune.output_path, "Where to write the pruned model")
      ->required();
  prune_cmd
      ->add_option("--method", prune.method,
                   "Channel importance criterion: l1, l2, bn-gamma, fpgm, random, "
                   "similarity-chain, activation, contribution (the last two need --data)")
      ->capture_default_str();
  addPruneTargetFlags(prune_cmd, prune);
  addPruneMethodFlags(prune_cmd, prune);
  addPruneRecoveryFlags(prune_cmd, prune);
  addStrictFlag(prune_cmd, prune.strict);
  prune_cmd->add_flag("--json", prune.json, "Print one JSON object");
  prune_cmd->add_option("--report", prune.html_report,
                        "Write an HTML report (channels per layer before/after, sensitivity)");
  prune_cmd->footer(kExitCodeHelp);
  return prune_cmd;
}

CLI::App* addEvalCommand(CLI::App& app, EvalCommandOptions& eval) {
  CLI::App* eval_cmd = app.add_subcommand(
      "eval", "Accuracy on labelled data and fidelity against a reference model");
  eval_cmd->add_option("MODEL", eval.model_path, "The .onnx file to evaluate")->required();
  addDataOptions(eval_cmd, eval.data, true);
  eval_cmd->add_option(
      "--reference", eval.reference_path,
      "Original model: report top-1 agreement, cosine similarity and SQNR against it");
  eval_cmd->add_option("--limit", eval.limit, "Use only the first N samples");
  eval_cmd->add_option("--batch", eval.batch, "Samples per batch")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  eval_cmd->add_option("--threads", eval.threads, "Threads (0: every core)")->capture_default_str();
  eval_cmd->add_flag("--json", eval.json,
                     "Print one JSON object (top1, top5, count, images_per_second, ...)");
  addStrictFlag(eval_cmd, eval.strict);
  eval_cmd->footer(kExitCodeHelp);
  return eval_cmd;
}

CLI::App* addRunCommand(CLI::App& app, RunCommandOptions& run_opts) {
  CLI::App* run_cmd = app.add_subcommand(
      "run", "Run a model on data and write each output as .npy files (<output>_<batch>.npy)");
  run_cmd->add_option("MODEL", run_opts.model_path, "The .onnx file to run")->required();
  addDataOptions(run_cmd, run_opts.data, false);
  run_cmd->add_option("--output-dir", run_opts.output_dir, "Folder for the .npy files")->required();
  run_cmd->add_option("--limit", run_opts.limit, "Use only the first N samples");
  run_cmd->add_option("--batch", run_opts.batch, "Samples per batch (one file per batch)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  run_cmd->add_option("--threads", run_opts.threads, "Threads (0: every core)")
      ->capture_default_str();
  run_cmd->add_flag("--json", run_opts.json,
                    "Print one JSON object (output_dir, files[], samples)");
  addStrictFlag(run_cmd, run_opts.strict);
  run_cmd->footer(kExitCodeHelp);
  return run_cmd;
}

CLI::App* addQuantizeCommand(CLI::App& app, QuantizeCommandOptions& quant) {
  CLI::App* quant_cmd = app.add_subcommand(
      "quantize", "Post-training quantization: int8/int4 weights, calibrated activations");
  quant_cmd->add_option("MODEL", quant.model_path, "The .onnx file to quantize")->required();
  quant_cmd->add_option("-o,--output", quant.output_path, "Where to write the quantized model")
      ->required();
  quant_cmd->add_option("--format", quant.format, "qdq, qoperator, weights-only or integer")
      ->capture_default_str();
  quant_cmd
      ->add_option("--qdq-placement", quant.qdq_placement,
                   "ort (Q/DQ where ONNX Runtime fuses integer kernels) or tensorrt (layer inputs)")
      ->capture_default_str();
  quant_cmd->add_option("--weight-bits", quant.weight_bits, "8 or 4")->capture_default_str();
  quant_cmd->add_option("--act-bits", quant.act_bits, "8, 4 or 2")->capture_default_str();
  quant_cmd->add_flag("--per-tensor", quant.per_tensor, "One weight scale per layer");
  quant_cmd->add_flag("--symmetric-activations", quant.symmetric_activations,
                      "int8 activations with zero point 0 (default: asymmetric uint8)");
  quant_cmd
      ->add_option("--calib", quant.calib.data,
                   "Calibration samples (data SPEC, e.g. training images; an image folder "
                   "is read recursively, unlabelled); NAME=SPEC for each input of a model with "
                   "several (repeat)")
      ->allow_extra_args(false);
  quant.calib.unlabelled = true;
  quant.calib.range_flag = "--calib-range";
  quant_cmd
      ->add_option("--calib-range", quant.calib.range,
                   "Use samples A..B-1 of --calib: A:B, A: or :B (e.g. 0:50000)")
      ->check(rangeCheck());
  addPreprocessFlags(quant_cmd, quant.calib);
  quant_cmd->add_option("--calib-size", quant.calib_size, "Calibration samples to use")
      ->capture_default_str();
  quant_cmd->add_option("--calib-method", quant.calib_method, "minmax, percentile, entropy, mse")
      ->capture_default_str();
  quant_cmd->add_option("--percentile", quant.percentile, "For --calib-method percentile")
      ->capture_default_str();
  quant_cmd
      ->add_option("--block-size", quant.block_size, "int4 weights: block along the input axis")
      ->capture_default_str();
  quant_cmd->add_flag("--bias-correction", quant.bias_correction,
                      "Correct biases for the mean output shift (Nagel et al. 2019)");
  quant_cmd->add_flag("--equalize", quant.equalize, "Cross-layer equalisation first");
  quant_cmd->add_flag("--quantize-last", quant.quantize_last,
                      "Also quantize the last layer (the classifier stays float by default)");
  quant_cmd->add_flag("--keep-names", quant.keep_names,
                      "Keep node and value names (default: short generated names, smaller file)");
  quant_cmd->add_flag("--fp32-storage", quant.fp32_storage,
                      "Store biases and scales as float32 (default: float16 + Cast, smaller file)");
  quant_cmd->add_option("--exclude", quant.exclude, "Layer names to keep in float");
  quant_cmd
      ->add_option("--rounding", quant.rounding,
                   "balanced (nearest, each channel's rounding errors summing to under half a "
                   "step), nearest, or adaround: learned rounding of the weights on --calib "
                   "samples")
      ->capture_default_str();
  quant_cmd->add_flag("--auto-exclude,!--no-auto-exclude", quant.auto_exclude,
                      "Keep the fewest, most harmful layers in float so the model output meets "
                      "--min-sqnr on calibration samples (default on; needs --calib)");
  quant_cmd->add_option("--min-sqnr", quant.min_sqnr,
                        "Output SQNR target (dB) of --auto-exclude, against float, per "
                        "calibration sample (default 30 at 8 bits; at 4 or fewer bits "
                        "auto-exclude runs only when this is given)");
  quant_cmd
      ->add_option("--sqnr-samples", quant.sqnr_samples,
                   "Calibration samples for the per-layer SQNR table (0: skip)")
      ->capture_default_str();
  quant_cmd->add_option("--threads", quant.threads, "Threads (0: every core)");
  addStrictFlag(quant_cmd, quant.strict);
  quant_cmd->add_flag("--json", quant.json, "Print one JSON object (before, after, layers, ...)");
  quant_cmd->add_option("--report", quant.html_report,
                        "Write an HTML report (per-layer bits, scales and SQNR)");
  quant_cmd->footer(kExitCodeHelp);
  return quant_cmd;
}

CLI::App* addCompressCommand(CLI::App& app, CompressCommandOptions& compress) {
  CLI::App* compress_cmd = app.add_subcommand(
      "compress",
      "Prune while the accuracy demand holds, then quantize until the size demand holds");
  compress_cmd->add_option("MODEL", compress.model_path, "The .onnx file to compress")->required();
  compress_cmd->add_option("-o,--output", compress.output_path, "Where to write the result")
      ->required();
  addDataOptions(compress_cmd, compress.data, true);
  compress_cmd
      ->add_option("--calib", compress.calib,
                   "Calibration samples (criteria, recovery, activation ranges); default: "
                   "--data; NAME=SPEC for each input of a model with several (repeat)")
      ->allow_extra_args(false);
  compress_cmd
      ->add_option("--calib-range", compress.calib_range,
                   "Use samples A..B-1 of --calib (default: all of --calib, or "
                   "--data-range when --calib is not given)")
      ->check(rangeCheck());
  compress_cmd->add_option("--max-accuracy-drop", compress.max_accuracy_drop,
                           "Allowed drop in percentage points: accuracy with labels, top-1 "
                           "agreement with the original without (or, when no output holds class "
                           "scores, fidelity: 1 - the outputs' relative squared error)");
  compress_cmd
      ->add_option("--quality", compress.quality,
                   "Without labels: agreement (top-1 of the outputs holding class scores), "
                   "fidelity (for a regression whose [N, K] output auto would read as class "
                   "scores) or auto (agreement where some output holds class scores)")
      ->check(CLI::IsMember({"auto", "agreement", "fidelity"}))
      ->capture_default_str();
  compress_cmd->add_option("--target-size", compress.target_size,
                           "Size demand: bytes (200000, 150K, 2MiB) or a ratio of the input "
                           "(0.1 or 10x)");
  compress_cmd->add_option("--recipe", compress.recipe,
                           "Replay the steps of a recipe (JSON written by --save-recipe)");
  compress_cmd->add_option("--save-recipe", compress.save_recipe,
                           "Write the steps that produced the result as a recipe");
  compress_cmd->add_option("--report", compress.html_report,
                           "Write an HTML report (trajectory, channels, sensitivity)");
  compress_cmd->add_flag("--keep-best", compress.keep_best,
                         "Write the best model found even when the targets are not met");
  compress_cmd->add_flag(
      "--keep-names", compress.keep_names,
      "Keep node and value names (default: short generated names, smaller file)");
  compress_cmd->add_flag("--dry-run", compress.dry_run,
                         "Say what would be done and the expected size; write nothing");
  compress_cmd
      ->add_option("--eval-size", compress.eval_size,
                   "Samples of --data used to measure accuracy after each step (-1: all)")
      ->capture_default_str();
  compress_cmd->add_option("--calib-size", compress.calib_size, "Calibration samples")
      ->capture_default_str();
  compress_cmd->add_option("--method", compress.method, "Pruning criterion")->capture_default_str();
  compress_cmd->add_option("--recover", compress.recover, "none, bn or lsq")
      ->check(CLI::IsMember({"none", "bn", "lsq"}))
      ->capture_default_str();
  compress_cmd
      ->add_option("--calib-method", compress.calib_method, "minmax, percentile, entropy or mse")
      ->capture_default_str();
  compress_cmd
      ->add_option("--step", compress.step,
                   "Share of the remaining prunable channels removed per step")
      ->check(CLI::Range(0.001, 0.9))
      ->capture_default_str();
  compress_cmd->add_option("--exclude", compress.exclude, "Layers to leave alone");
  compress_cmd->add_flag("--exact-only", compress.exact_only,
                         "Prune only output-preserving channel groups (see prune)");
  compress_cmd->add_flag("--no-prune", compress.no_prune, "Quantize only");
  compress_cmd->add_option("--finetune", compress.finetune_epochs,
                           "Retrain the pruned model for EPOCHS passes over the calibration "
                           "data (distillation from the original) before quantizing");
  addFinetuneLossFlag(compress_cmd, compress.finetune_loss);
  compress_cmd
      ->add_option("--rounding", compress.rounding,
                   "Weights of the layers lowered to 4 bits: adaround (learned on --calib "
                   "samples, once for the chosen configuration) or balanced")
      ->capture_default_str();
  compress_cmd->add_flag("--qat", compress.qat,
                         "With --finetune: retrain the layers lowered to 4 bits with "
                         "fake-quantized weights before quantizing them");
  compress_cmd
      ->add_option("--retrain-slack", compress.retrain_slack,
                   "With --finetune: points pruning may lose beyond the demand before retraining")
      ->capture_default_str();
  compress_cmd->add_flag("--no-quantize", compress.no_quantize, "Prune only");
  compress_cmd->add_option("--batch", compress.batch, "Samples per batch")->capture_default_str();
  compress_cmd->add_option("--threads", compress.threads, "Threads (0: every core)")
      ->capture_default_str();
  addStrictFlag(compress_cmd, compress.strict);
  compress_cmd->add_flag("--json", compress.json,
                         "Print one JSON object (before, after, output, steps, accuracy_drop)");
  compress_cmd->footer(kExitCodeHelp);
  return compress_cmd;
}

CLI::App* addFinetuneCommand(CLI::App& app, FinetuneCommandOptions& finetune) {
  CLI::App* finetune_cmd = app.add_subcommand(
      "finetune", "Retrain a compressed model by distillation from the original (the teacher)");
  finetune_cmd->add_option("MODEL", finetune.model_path, "The .onnx file to train")->required();
  finetune_cmd->add_option("-o,--output", finetune.output_path, "Where to write the result")
      ->required();
  finetune_cmd->add_option("--teacher", finetune.teacher_path, "The original model (.onnx)")
      ->required();
  addDataOptions(finetune_cmd, finetune.data, true);
  finetune_cmd->add_option("--epochs", finetune.epochs, "Passes over --data")
      ->capture_default_str();
  finetune_cmd->add_option("--val", finetune.val,
                           "Validation samples: the best epoch is kept (top-1 with --val-labels, "
                           "else the distillation loss)");
  finetune_cmd->add_option("--val-labels", finetune.val_labels, "Labels of --val");
  finetune_cmd->add_option("--val-range", finetune.val_range, "Use samples A..B-1 of --val")
      ->check(rangeCheck());
  finetune_cmd->add_option("--checkpoint", finetune.checkpoint_dir,
                           "Directory for checkpoints; a run resumes from the one it holds");
  addTrainSettings(finetune_cmd, finetune.train);
  addStrictFlag(finetune_cmd, finetune.strict);
  finetune_cmd->add_flag("--json", finetune.json, "Print one JSON object (epochs, best epoch)");
  finetune_cmd->footer(kExitCodeHelp);
  return finetune_cmd;
}

}  // namespace

int run(int argc, char** argv) {
  CLI::App app{"nncompress: make ONNX models small and fast for edge devices.", "nncompress"};
  app.footer(kExitCodeHelp);
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("nncompress ") + NNC_VERSION);
  int verbose = 0;
  bool quiet = false;
  app.add_flag("-v,--verbose", verbose, "More log output on stderr (repeat for more)");
  app.add_flag("-q,--quiet", quiet, "Only errors on stderr");

  ReportOptions report;
  CLI::App* report_cmd = addReportCommand(app, report);
  ConvertOptions convert;
  CLI::App* convert_cmd = addConvertCommand(app, convert);
  PruneOptions prune;
  CLI::App* prune_cmd = addPruneCommand(app, prune);
  EvalCommandOptions eval;
  CLI::App* eval_cmd = addEvalCommand(app, eval);
  RunCommandOptions run_opts;
  CLI::App* run_cmd = addRunCommand(app, run_opts);
  QuantizeCommandOptions quant;
  CLI::App* quant_cmd = addQuantizeCommand(app, quant);
  CompressCommandOptions compress;
  CLI::App* compress_cmd = addCompressCommand(app, compress);
  FinetuneCommandOptions finetune;
  CLI::App* finetune_cmd = addFinetuneCommand(app, finetune);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e) == 0 ? kExitOk : kExitUsage;  // --help
    // One line, as every other error: CLI11's own adds a second.
    std::cerr << "nncompress: error: " << e.what() << " (--help lists the options)\n";
    return kExitUsage;
  }
  setUpLogging(quiet ? -1 : verbose);

  Status status;
  try {
    if (report_cmd->parsed()) status = runReport(report);
    if (convert_cmd->parsed()) status = runConvert(convert);
    if (prune_cmd->parsed()) status = runPrune(prune);
    if (eval_cmd->parsed()) status = runEval(eval);
    if (run_cmd->parsed()) status = runRun(run_opts);
    if (quant_cmd->parsed()) status = runQuantize(quant);
    if (compress_cmd->parsed()) status = runCompress(compress);
    if (finetune_cmd->parsed()) status = runFinetune(finetune);
  } catch (const std::exception& e) {
    status = internalError(std::string("unexpected exception: ") + e.what());
  }
  for (const CLI::App* command : app.get_subcommands()) status = namingFlag(status, *command);
  if (!status.isOk()) {
    spdlog::error("{}", status.message());
    if (status.code() == StatusCode::kInternal)
      spdlog::error("this is a bug in nncompress: please report it");
  }
  return exitCodeFor(status);
}

}  // namespace nnc::cli
