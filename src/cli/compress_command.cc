// nncompress compress: prune while the accuracy demand holds, then quantize until the size demand
// holds (METHODS.md, method 3); the decisions are pipeline/compress.h's, the actions
// pipeline/compress_actions.h's. Recipes record the decisions so a run can be replayed.

#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <type_traits>

#include "data_options.h"
#include "finetune_run.h"
#include "model_totals.h"
#include "nncompress/analysis/model_stats.h"
#include "nncompress/cli/commands.h"
#include "nncompress/onnx_io/file_util.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/pipeline/compress.h"
#include "nncompress/pipeline/compress_actions.h"
#include "nncompress/pipeline/evaluate.h"
#include "nncompress/report/compress_report.h"
#include "nncompress/report/model_report.h"
#include "progress.h"

namespace nnc::cli {
namespace {

constexpr int kRecipeVersion = 1;

// BYTES (optionally with a K/M/G or KiB/MiB/GiB suffix), RATIO as a fraction of the input
// (0.1) or as a compression factor (10x).
StatusOr<int64_t> parseTargetSize(const std::string& text, int64_t original_bytes) {
  if (text.empty()) return int64_t{0};
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (...) {
    used = 0;
  }
  std::string suffix = text.substr(used);
  for (char& c : suffix) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (used == 0 || !(value > 0))
    return invalidArgument("--target-size '" + text +
                           "': expected bytes (e.g. 200000, 150K, 2MiB) or a ratio (0.1, 10x)");
  if (suffix == "x") return static_cast<int64_t>(original_bytes / value);
  if (suffix.empty() && value < 1) return static_cast<int64_t>(original_bytes * value);
  const std::pair<const char*, double> units[] = {
      {"", 1},         {"b", 1},           {"k", 1e3},           {"kb", 1e3},
      {"m", 1e6},      {"mb", 1e6},        {"g", 1e9},           {"gb", 1e9},
      {"kib", 1024.0}, {"mib", 1048576.0}, {"gib", 1073741824.0}};
  for (const auto& [unit, factor] : units)
    if (suffix == unit) return static_cast<int64_t>(value * factor);
  return invalidArgument("--target-size '" + text + "': unknown unit '" + suffix + "'");
}

nlohmann::ordered_json recipeJson(const CompressSetup& setup, const CompressResult& r) {
  auto steps = nlohmann::ordered_json::array();
  for (double f : r.best_prune_fractions)
    steps.push_back({{"prune",
                      {{"method", setup.criterion},
                       {"allocation", "global"},
                       {"fraction", f},
                       {"recover", setup.recovery},
                       {"min_group_keep", setup.min_group_keep}}}});
  if (r.best_retrained && setup.finetune) {  // METHODS.md method 3: retrain before quantizing
    const FinetuneOptions& f = *setup.finetune;
    steps.push_back(
        {{"retrain",
          {{"method", "distillation"},
           {"epochs", f.epochs},
           {"batch", f.batch},
           {"lr", f.learning_rate},
           {"optimizer", f.optimizer.kind == train::OptimizerKind::kSgd ? "sgd" : "adamw"},
           {"weight_decay", f.optimizer.weight_decay},
           {"temperature", f.loss.temperature},
           {"loss", train::lossKindName(f.loss.kind)},
           {"warmup", f.warmup_fraction},
           {"seed", f.seed}}}});
  }
  if (r.best_quantized) {
    nlohmann::ordered_json bits = nlohmann::ordered_json::object();
    for (const auto& [layer, b] : r.best_bits) bits[layer] = b;
    steps.push_back(
        {{"quantize",
          {{"format", "qdq"},
           {"weight_bits", 8},
           {"layer_weight_bits", bits},
           {"calib_method", setup.calib_method},
           {"rounding", r.adaround_layers > 0 ? "adaround"
                        : r.best_qat          ? "nearest"
                                              : "balanced"},
           {"qat", r.best_qat},
           {"qat_epochs", r.best_qat && setup.finetune ? setup.finetune->epochs : 0}}}});
  }
  return {{"nncompress_recipe", kRecipeVersion}, {"steps", steps}};
}

// A recipe field of the JSON type T (the fallback when absent); a wrong type is the recipe's
// error, named by its field, not an exception.
template <typename T>
StatusOr<T> recipeField(const nlohmann::json& object, const char* key, T fallback) {
  if (!object.contains(key)) return fallback;
  const nlohmann::json& v = object[key];
  const bool fits = std::is_same_v<T, std::string> ? v.is_string()
                    : std::is_same_v<T, bool>      ? v.is_boolean()
                    : std::is_same_v<T, int>       ? v.is_number_integer()
                                                   : v.is_number();
  if (!fits)
    return invalidArgument("recipe field '" + std::string(key) +
                           "' has the wrong type: " + v.dump());
  return v.get<T>();
}

// The object under `key` of a recipe step.
StatusOr<const nlohmann::json*> recipeObject(const nlohmann::json& step, const char* key) {
  if (!step[key].is_object())
    return invalidArgument("recipe field '" + std::string(key) +
                           "' must be an object: " + step[key].dump());
  return &step[key];
}

// The training settings of replayed retrain/qat steps: --finetune's, else the defaults.
Status ensureFinetuneOptions(CompressSetup& setup, int epochs) {
  if (setup.finetune) return Status::ok();
  NNC_ASSIGN_OR_RETURN(setup.finetune, finetuneOptionsFrom({}, epochs));
  setup.finetune->log = [](const std::string& line) { spdlog::info("finetune: {}", line); };
  return Status::ok();
}

// A recipe's retrain step: distillation from the original on the calibration data with the
// recorded settings (over --finetune's, or the defaults).
StatusOr<Model> replayRetrain(const Model& current, const nlohmann::json& r, CompressSetup& setup) {
  NNC_RETURN_IF_ERROR(ensureFinetuneOptions(setup, 1));
  FinetuneOptions& f = *setup.finetune;
  NNC_ASSIGN_OR_RETURN(f.epochs, recipeField(r, "epochs", f.epochs));
  NNC_ASSIGN_OR_RETURN(f.batch, recipeField(r, "batch", f.batch));
  NNC_ASSIGN_OR_RETURN(f.learning_rate, recipeField(r, "lr", f.learning_rate));
  NNC_ASSIGN_OR_RETURN(f.optimizer.weight_decay,
                       recipeField(r, "weight_decay", f.optimizer.weight_decay));
  NNC_ASSIGN_OR_RETURN(f.loss.temperature, recipeField(r, "temperature", f.loss.temperature));
  NNC_ASSIGN_OR_RETURN(f.warmup_fraction, recipeField(r, "warmup", f.warmup_fraction));
  NNC_ASSIGN_OR_RETURN(const std::string optimizer,
                       recipeField(r, "optimizer", std::string("adamw")));
  NNC_ASSIGN_OR_RETURN(f.optimizer.kind, train::parseOptimizerKind(optimizer));
  NNC_ASSIGN_OR_RETURN(const std::string loss,
                       recipeField(r, "loss", std::string(train::lossKindName(f.loss.kind))));
  NNC_ASSIGN_OR_RETURN(f.loss.kind, train::parseLossKind(loss));
  if (!(f.epochs > 0 && f.batch > 0 && f.learning_rate > 0))
    return invalidArgument("recipe retrain step needs epochs, batch and lr above 0");
  NNC_ASSIGN_OR_RETURN(CompressActions actions, makeCompressActions(setup));
  return actions.retrain(current);
}

// A recipe's quantize step: with "qat" (compress --qat), quantized from a copy trained for
// `qat_epochs` with the layers of `bits` fake-quantized (other training settings: the retrain
// step's, else the defaults); else with the recorded rounding.
StatusOr<Model> replayQuantize(const Model& current, const BitPlan& bits, int qat_epochs,
                               bool adaround, CompressSetup& setup) {
  if (qat_epochs > 0 && !bits.empty()) {
    NNC_RETURN_IF_ERROR(ensureFinetuneOptions(setup, qat_epochs));
    setup.finetune->epochs = qat_epochs;
    setup.qat = true;
  }
  NNC_ASSIGN_OR_RETURN(CompressActions actions, makeCompressActions(setup));
  if (actions.qat && !bits.empty()) return actions.qat(current, bits);
  if (adaround && actions.learned_rounding) {
    NNC_ASSIGN_OR_RETURN(auto learned, actions.learned_rounding(current, bits));
    return std::move(learned.first);
  }
  return actions.quantize(current, bits);
}

// Replays a recipe's steps with the same actions compress uses.
StatusOr<Model> replayRecipe(const Model& original, const nlohmann::json& recipe,
                             CompressSetup& setup, std::vector<std::string>* done) {
  if (!recipe.is_object() || !recipe.contains("nncompress_recipe") ||
      !recipe["nncompress_recipe"].is_number_integer() ||
      recipe["nncompress_recipe"].get<int>() != kRecipeVersion || !recipe.contains("steps") ||
      !recipe["steps"].is_array())
    return invalidArgument("not an nncompress recipe (version " + std::to_string(kRecipeVersion) +
                           "): expected {\"nncompress_recipe\": 1, \"steps\": [...]}");
  NNC_ASSIGN_OR_RETURN(Model current, cloneModel(original));
  for (const auto& step : recipe["steps"]) {
    if (step.is_object() && step.contains("prune")) {
      NNC_ASSIGN_OR_RETURN(const nlohmann::json* prune, recipeObject(step, "prune"));
      const nlohmann::json& p = *prune;
      NNC_ASSIGN_OR_RETURN(setup.criterion, recipeField(p, "method", setup.criterion));
      NNC_ASSIGN_OR_RETURN(setup.recovery, recipeField(p, "recover", setup.recovery));
      NNC_ASSIGN_OR_RETURN(setup.min_group_keep,
                           recipeField(p, "min_group_keep", setup.min_group_keep));
      NNC_ASSIGN_OR_RETURN(const double fraction, recipeField(p, "fraction", 0.0));
      if (!(fraction > 0 && fraction < 1))
        return invalidArgument("recipe prune step needs 0 < fraction < 1");
      NNC_ASSIGN_OR_RETURN(CompressActions actions, makeCompressActions(setup));
      NNC_ASSIGN_OR_RETURN(current, actions.prune(current, fraction));
      done->push_back("prune " + std::to_string(fraction) + " (" + setup.criterion + ", " +
                      setup.recovery + ")");
    } else if (step.is_object() && step.contains("quantize")) {
      NNC_ASSIGN_OR_RETURN(const nlohmann::json* quantize, recipeObject(step, "quantize"));
      const nlohmann::json& q = *quantize;
      NNC_ASSIGN_OR_RETURN(const std::string format, recipeField(q, "format", std::string("qdq")));
      if (format != "qdq") return unsupported("recipe quantize steps support format qdq");
      NNC_ASSIGN_OR_RETURN(setup.calib_method, recipeField(q, "calib_method", setup.calib_method));
      BitPlan bits;
      if (q.contains("layer_weight_bits")) {
        NNC_ASSIGN_OR_RETURN(const nlohmann::json* layers, recipeObject(q, "layer_weight_bits"));
        for (const auto& [layer, b] : layers->items()) {
          NNC_ASSIGN_OR_RETURN(bits[layer], recipeField(*layers, layer.c_str(), 8));
        }
      }
      NNC_ASSIGN_OR_RETURN(const std::string rounding,
                           recipeField(q, "rounding", std::string("balanced")));
      if (rounding != "balanced" && rounding != "adaround" && rounding != "nearest")
        return invalidArgument("recipe quantize rounding must be balanced, adaround or nearest");
      NNC_ASSIGN_OR_RETURN(const bool qat, recipeField(q, "qat", false));
      if (rounding == "nearest" && !qat)
        return invalidArgument("recipe quantize rounding nearest is what qat records");
      NNC_ASSIGN_OR_RETURN(const int qat_epochs, recipeField(q, "qat_epochs", 1));
      NNC_ASSIGN_OR_RETURN(current, replayQuantize(current, bits, qat ? qat_epochs : 0,
                                                   rounding == "adaround", setup));
      done->push_back("quantize qdq (" + std::to_string(bits.size()) + " layers below 8 bits, " +
                      rounding + " rounding" +
                      (qat && !bits.empty() ? ", quantization-aware trained" : "") + ")");
    } else if (step.is_object() && step.contains("retrain")) {
      NNC_ASSIGN_OR_RETURN(const nlohmann::json* retrain, recipeObject(step, "retrain"));
      NNC_ASSIGN_OR_RETURN(current, replayRetrain(current, *retrain, setup));
      done->push_back("retrain (distillation, " + std::to_string(setup.finetune->epochs) +
                      " epochs)");
    } else {
      return invalidArgument("recipe step " + step.dump() +
                             " is neither prune, retrain nor quantize");
    }
  }
  return current;
}

// What a compress run decided and wrote, for the summaries.
struct CompressRun {
  int64_t original_bytes = 0;
  int64_t max_bytes = 0;
  int64_t converted_from = 0;
  const char* quality_name = "accuracy";
  CompressResult result;
  std::optional<Model> output;
  std::vector<std::string> replayed;
  bool met = false;
  bool written = false;
  double drop = 0;

  double ratio(int64_t bytes) const { return bytes > 0 ? double(original_bytes) / bytes : 0.0; }
};

// The usage checks that need no model, and the calibration data options: --calib (default
// --data) sliced by --calib-range (default: all of --calib, --data-range when the calibration
// samples are --data's). Both ranges are checked before any data is read.
StatusOr<DataOptions> checkCompressOptions(const CompressCommandOptions& o) {
  if (o.data.data.empty()) return invalidArgument("compress needs --data SPEC");
  if (o.recipe.empty() && !(o.max_accuracy_drop >= 0))
    return invalidArgument("compress needs --max-accuracy-drop P (percentage points, e.g. 1.0)");
  if (o.recipe.empty() && o.target_size.empty())
    return invalidArgument("compress needs --target-size BYTES|RATIO (e.g. 200K, 0.1 or 10x)");
  // --save-recipe is written only when searching (a replay has its recipe already).
  NNC_RETURN_IF_ERROR(
      checkOutputPaths(o.model_path, {{"-o", o.output_path},
                                      {"--report", o.html_report},
                                      {"--save-recipe", o.recipe.empty() ? o.save_recipe : ""}}));
  DataOptions calib = o.data;
  if (!o.calib.empty()) {
    calib.data = o.calib;
    calib.range.clear();
    calib.unlabelled = true;  // an image folder: every image under it, subfolders not classes
  }
  if (!o.calib_range.empty()) {
    calib.range = o.calib_range;
    calib.range_flag = "--calib-range";
  }
  NNC_RETURN_IF_ERROR(rangeFrom(o.data).status());
  NNC_RETURN_IF_ERROR(rangeFrom(calib).status());
  if (o.rounding != "adaround" && o.rounding != "balanced")
    return invalidArgument("--rounding must be adaround or balanced");
  return calib;
}

// Quantization writes per-channel QDQ (opset 13) and int4 layers (21: the version converter
// reaches 17, the quantizer bumps 17 -> 21); the conversion happens once, up front, so every
// trial and the baseline see the same model.
StatusOr<Model> loadCompressInput(const CompressCommandOptions& o, LoadedModelInfo& info,
                                  int64_t& converted_from) {
  NNC_ASSIGN_OR_RETURN(Model loaded, loadInputModel(o.model_path, o.strict, &info));
  if (size_t n = demoteInitializerInputs(loaded))
    spdlog::info("{} initializers listed as graph inputs are treated as constants", n);
  if (!o.no_quantize) {
    Status raised = raiseOpsetTo(loaded, 17, "int4 and per-channel QuantizeLinear/DequantizeLinear",
                                 &converted_from);
    if (!raised.isOk()) return raised.withContext(o.model_path);
  }
  return loaded;
}

// A model's size as its user gets it: a float16 model, worked on in float32, counts as the
// float16 file it is written back to, so targets like 4x mean 4x of that file.
StatusOr<int64_t> deployedBytes(const Model& model, const Float16Promotion& float16) {
  std::optional<Model> written;
  if (float16.promoted) {
    written = model.clone();
    NNC_RETURN_IF_ERROR(writeBackFloat16(*written, float16));
  }
  NNC_ASSIGN_OR_RETURN(std::string bytes, serializeModel(written ? *written : model));
  return static_cast<int64_t>(bytes.size());
}

// The options of the search and its actions (the readers and labels are the caller's).
Status configureCompressSetup(const CompressCommandOptions& o, const Float16Promotion& float16,
                              CompressSetup& setup) {
  setup.eval_size = o.eval_size;
  setup.calib_size = o.calib_size;
  setup.batch = o.batch;
  setup.threads = o.threads;
  setup.criterion = o.method;
  setup.recovery = o.recover;
  setup.calib_method = o.calib_method;
  setup.exclude = o.exclude;
  setup.exact_only = o.exact_only;
  setup.keep_names = o.keep_names;
  setup.serialized_size = [float16](const Model& m) { return deployedBytes(m, float16); };
  if (o.qat && o.finetune_epochs <= 0) return invalidArgument("--qat needs --finetune EPOCHS");
  setup.learned_rounding = o.rounding == "adaround";
  if (o.finetune_epochs < 0) return invalidArgument("--finetune must not be negative");
  if (o.finetune_epochs > 0) {
    TrainSettings ts;
    ts.batch = o.batch;
    ts.threads = o.threads;
    ts.loss = o.finetune_loss;
    NNC_ASSIGN_OR_RETURN(setup.finetune, finetuneOptionsFrom(ts, o.finetune_epochs));
    setup.finetune->log = [](const std::string& line) { spdlog::info("finetune: {}", line); };
    setup.qat = o.qat;
  }
  return Status::ok();
}

void printDryRun(const CompressCommandOptions& o, const Model& original, const CompressRun& run) {
  nlohmann::ordered_json j;
  j["model"] = o.model_path;
  j["before"] = totalsOf(original, run.original_bytes).json();
  j["target_bytes"] = run.max_bytes;
  j["expected_int8_bytes"] = run.original_bytes / 4;  // float32 weights become int8
  j["quality"] = run.quality_name;
  j["max_accuracy_drop"] = o.max_accuracy_drop;
  j["plan"] = {"measure baseline " + std::string(run.quality_name) + " on " +
                   std::to_string(o.eval_size) + " samples",
               "prune " + o.method + " steps of " + std::to_string(o.step) +
                   " of the remaining channels with " + o.recover +
                   " recovery while the demand holds",
               "quantize int8 QDQ; if larger than the target, lower the least sensitive layers "
               "to 4-bit weights"};
  if (!o.recipe.empty()) j["recipe"] = o.recipe;
  if (o.json)
    std::cout << j.dump(2) << "\n";
  else
    std::cout << "Dry run: nothing is written.\n" << j.dump(2) << "\n";
}

// --recipe: replays the recorded decisions and measures the result against the demands.
Status replayRecipeFile(const CompressCommandOptions& o, const Model& original,
                        CompressSetup& setup, CompressRun& run) {
  auto read = readFile(o.recipe);
  if (!read.isOk()) return read.status().withContext(o.recipe);
  const std::string text = std::move(read).value();
  nlohmann::json recipe = nlohmann::json::parse(text, nullptr, false);
  if (recipe.is_discarded()) return invalidArgument(o.recipe + ": not valid JSON");
  auto replay = replayRecipe(original, recipe, setup, &run.replayed);
  if (!replay.isOk()) return replay.status().withContext(o.recipe);
  CompressResult& result = run.result;
  NNC_ASSIGN_OR_RETURN(CompressActions actions, makeCompressActions(setup));
  NNC_ASSIGN_OR_RETURN(result.baseline_quality, actions.quality(original));
  result.baseline_bytes = run.original_bytes;
  NNC_ASSIGN_OR_RETURN(result.best_quality, actions.quality(*replay));
  NNC_ASSIGN_OR_RETURN(result.best_bytes, actions.size(*replay));
  result.met_size = run.max_bytes <= 0 || result.best_bytes <= run.max_bytes;
  const bool met_drop = o.max_accuracy_drop < 0 ||
                        result.baseline_quality - result.best_quality <= o.max_accuracy_drop / 100;
  if (met_drop)
    result.best = std::move(replay).value();
  else
    run.output = std::move(replay).value();  // kept for --keep-best only
  return Status::ok();
}

Status searchCompression(const CompressCommandOptions& o, const Model& original,
                         const CompressSetup& setup, CompressRun& run) {
  CompressTargets targets;
  targets.max_drop = o.max_accuracy_drop / 100;
  targets.max_bytes = run.max_bytes;
  targets.step_fraction = o.step;
  targets.prune = !o.no_prune;
  targets.quantize = !o.no_quantize;
  targets.retrain_slack = o.retrain_slack / 100;
  NNC_ASSIGN_OR_RETURN(CompressActions actions, makeCompressActions(setup));
  auto searched = compressModel(original, targets, actions);
  if (!searched.isOk()) return searched.status().withContext(o.model_path);
  run.result = std::move(searched).value();
  return Status::ok();
}

// The model (when met or --keep-best), the recipe and the HTML report; nothing stays on disk
// when one of them fails.
Status writeCompressOutputs(const CompressCommandOptions& o, const Model& original,
                            const LoadedModelInfo& info, const CompressSetup& setup,
                            CompressRun& run) {
  // The texts first, so that only their writes can fail after the model is on disk.
  const bool save_recipe = !o.save_recipe.empty() && o.recipe.empty();
  const std::string recipe_text = save_recipe ? recipeJson(setup, run.result).dump(2) + "\n" : "";
  std::string report_html;
  if (!o.html_report.empty()) {
    CompressReportInput report{o.model_path, run.original_bytes,
                               &original,    run.output ? &*run.output : nullptr,
                               &run.result,  run.quality_name};
    report_html = compressReportHtml(report);
  }
  WrittenModel written_model(o.output_path);
  if (run.output && (run.met || o.keep_best)) {
    // The report compares layers by name, so the compacted copy is only what is written.
    auto exported = exportedForm(*run.output, o.keep_names);
    if (!exported.isOk()) return exported.status().withContext(o.output_path);
    NNC_RETURN_IF_ERROR(written_model.write(*exported, info, &original));
    run.written = true;
  }
  if (save_recipe) {
    Status saved = writeStringAtomically(o.save_recipe, recipe_text);
    if (!saved.isOk()) return saved.withContext(o.save_recipe);
  }
  if (!o.html_report.empty()) {
    Status saved = writeStringAtomically(o.html_report, report_html);
    if (!saved.isOk()) {
      if (save_recipe) {
        std::error_code ec;
        std::filesystem::remove(o.save_recipe, ec);
      }
      return saved.withContext(o.html_report);
    }
  }
  written_model.keep();
  return Status::ok();
}

void printCompressJson(const CompressCommandOptions& o, const Model& original,
                       const CompressRun& run) {
  const CompressResult& result = run.result;
  nlohmann::ordered_json j;
  j["output"] =
      run.written ? nlohmann::ordered_json(o.output_path) : nlohmann::ordered_json(nullptr);
  j["met"] = run.met;
  if (run.converted_from) j["converted_from_opset"] = run.converted_from;
  j["before"] = totalsOf(original, run.original_bytes).json();
  if (run.output) j["after"] = totalsOf(*run.output, result.best_bytes).json();
  j["quality"] = run.quality_name;
  j["baseline"] = result.baseline_quality;
  j["final"] = run.output ? nlohmann::ordered_json(result.best_quality) : nullptr;
  j["accuracy_drop"] = run.output ? nlohmann::ordered_json(100 * run.drop) : nullptr;
  j["size_ratio"] = run.output ? run.ratio(result.best_bytes) : 0.0;
  j["target_bytes"] = run.max_bytes;
  auto steps = nlohmann::ordered_json::array();
  for (const CompressStep& s : result.steps)
    steps.push_back({{"kind", s.kind},
                     {"description", s.description},
                     {"bytes", s.bytes},
                     {"quality", s.quality},
                     {"accepted", s.accepted}});
  for (const std::string& s : run.replayed)
    steps.push_back({{"kind", "recipe"}, {"description", s}});
  j["steps"] = steps;
  if (!result.sensitivity.empty()) j["sensitivity"] = result.sensitivity;
  j["rounding"] = result.adaround_layers > 0 ? "adaround"
                  : result.best_qat          ? "nearest"
                                             : "balanced";
  j["qat"] = result.best_qat;
  j["adaround_layers"] = result.adaround_layers;
  std::cout << j.dump(2) << "\n";
}

void printCompressSteps(const CompressCommandOptions& o, const CompressRun& run) {
  const CompressResult& result = run.result;
  std::printf("baseline %s %.2f%%, %s\n", run.quality_name, 100 * result.baseline_quality,
              humanBytes(double(run.original_bytes)).c_str());
  for (const CompressStep& s : result.steps)
    std::printf("  %-11s %-60s %10s  %6.2f%%  %s\n", s.kind.c_str(), s.description.c_str(),
                humanBytes(double(s.bytes)).c_str(), 100 * s.quality, s.accepted ? "ok" : "-");
  for (const std::string& s : run.replayed) std::printf("  recipe      %s\n", s.c_str());
  if (run.output)
    std::printf("result: %s %.2f%% (drop %.2f points), %s (%.1fx smaller)\n", run.quality_name,
                100 * result.best_quality, 100 * run.drop,
                humanBytes(double(result.best_bytes)).c_str(), run.ratio(result.best_bytes));
  if (run.written) std::printf("wrote %s\n", o.output_path.c_str());
}

Status targetNotMet(const CompressCommandOptions& o, const CompressRun& run) {
  const int64_t best_bytes = run.result.best_bytes;
  std::string closest = run.output ? "closest: " + humanBytes(double(best_bytes)) + " (" +
                                         std::to_string(run.ratio(best_bytes)).substr(0, 5) +
                                         "x smaller) at a drop of " +
                                         std::to_string(100 * run.drop).substr(0, 5) + " points"
                                   : "no compressed model kept the accuracy demand";
  return Status(
      StatusCode::kTargetNotMet,
      "targets not met (size <= " + humanBytes(double(run.max_bytes)) +
          ", drop <= " + std::to_string(o.max_accuracy_drop).substr(0, 5) + " points); " + closest +
          (run.written ? "; wrote it (--keep-best)" : "; nothing written (--keep-best writes it)"));
}

}  // namespace

Status runCompress(const CompressCommandOptions& o) {
  NNC_ASSIGN_OR_RETURN(const DataOptions calib, checkCompressOptions(o));
  CompressRun run;
  LoadedModelInfo info;
  NNC_ASSIGN_OR_RETURN(const Model original, loadCompressInput(o, info, run.converted_from));
  NNC_ASSIGN_OR_RETURN(run.original_bytes, deployedBytes(original, info.float16));
  NNC_ASSIGN_OR_RETURN(run.max_bytes, parseTargetSize(o.target_size, run.original_bytes));

  NNC_ASSIGN_OR_RETURN(auto eval_reader, openReader(o.data, original, "data"));
  NNC_ASSIGN_OR_RETURN(std::optional<std::vector<int64_t>> labels,
                       openLabels(o.data, *eval_reader));
  NNC_ASSIGN_OR_RETURN(auto calib_reader, openReader(calib, original, "calibration data"));

  CompressSetup setup;
  setup.original = &original;
  setup.eval_data = eval_reader.get();
  setup.labels = labels ? &*labels : nullptr;
  setup.classes = classesOf(original);
  setup.calib_data = calib_reader.get();
  NNC_RETURN_IF_ERROR(configureCompressSetup(o, info.float16, setup));
  if (setup.finetune) {  // before the search: the retrain step would fail only after it
    Status trainable = checkTrainable(original);
    if (!trainable.isOk()) return trainable.withContext(o.model_path + ": --finetune");
  }
  setup.batch = batchFor(original, *calib_reader, setup.batch);  // many exports fix batch 1
  NNC_RETURN_IF_ERROR(chooseQuality(setup, o.quality).withContext(o.model_path));
  run.quality_name = qualityName(setup);
  if (setup.fidelity && o.quality == "auto")
    spdlog::info(
        "no output holds class scores: quality is the outputs' fidelity to the original, 1 - "
        "their relative squared error (a drop of P points allows P% error)");
  // A bar with ETA per evaluation on a terminal, periodic log lines otherwise.
  std::unique_ptr<Progress> progress;
  setup.eval_progress = [&progress](int64_t done, int64_t total) {
    if (!progress) progress = std::make_unique<Progress>(std::string("evaluating"));
    progress->update(done, total);
    if (done >= total) progress.reset();
  };

  if (o.dry_run) {
    printDryRun(o, original, run);
    return Status::ok();
  }
  if (!o.recipe.empty())
    NNC_RETURN_IF_ERROR(replayRecipeFile(o, original, setup, run));
  else
    NNC_RETURN_IF_ERROR(searchCompression(o, original, setup, run));

  run.met = run.result.best.has_value() && run.result.met_size;
  if (run.result.best) run.output = std::move(run.result.best);
  run.drop = run.result.baseline_quality - run.result.best_quality;
  NNC_RETURN_IF_ERROR(writeCompressOutputs(o, original, info, setup, run));
  if (o.json)
    printCompressJson(o, original, run);
  else
    printCompressSteps(o, run);
  if (!run.met) return targetNotMet(o, run);
  return Status::ok();
}

}  // namespace nnc::cli
