// nncompress quantize: BatchNorm folding, activation calibration and QDQ / weight-only export,
// with a per-layer table (bits, scales, SQNR of each layer's output against float).

#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "data_options.h"
#include "model_totals.h"
#include "nncompress/analysis/fidelity_taps.h"
#include "nncompress/analysis/model_stats.h"
#include "nncompress/cli/commands.h"
#include "nncompress/onnx_io/file_util.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/quant/act_equalize.h"
#include "nncompress/quant/adaround.h"
#include "nncompress/quant/auto_exclude.h"
#include "nncompress/quant/bn_fold.h"
#include "nncompress/quant/calibration.h"
#include "nncompress/quant/compact.h"
#include "nncompress/quant/equalize.h"
#include "nncompress/quant/quantize.h"
#include "nncompress/report/html.h"
#include "nncompress/report/model_report.h"

namespace nnc::cli {
namespace {

nlohmann::ordered_json number(double v) {
  if (std::isinf(v)) return "inf";
  if (std::isnan(v)) return nullptr;
  return v;
}

// "uint8", or "4-bit (uint8)" for k-bit activations stored in uint8.
std::string actLabel(int bits) {
  return bits == 8 ? "uint8" : std::to_string(bits) + "-bit (uint8)";
}

// --auto-exclude: adds to qo.float_activations (or qo.exclude) the layers kept float for the
// output SQNR target.
Status autoExclude(const QuantizeCommandOptions& o, double min_sqnr, const Model& model,
                   const std::map<std::string, quant::Range>& ranges, data::SampleReader& reader,
                   quant::QuantizeOptions& qo, quant::AutoExcludeResult& result) {
  quant::AutoExcludeOptions ao;
  ao.min_sqnr_db = min_sqnr;
  ao.samples = std::min<int64_t>(64, o.calib_size < 0 ? reader.size() : o.calib_size);
  ao.batch = batchFor(model, reader, 32);
  ao.threads = o.threads;
  ao.float16_storage = !o.fp32_storage && qo.format != quant::QuantFormat::kInteger;
  auto chosen = quant::chooseFloatLayers(model, qo, ranges, reader, ao);
  if (!chosen.isOk()) return chosen.status().withContext("--auto-exclude on " + o.model_path);
  result = std::move(chosen).value();
  for (const auto& e : result.excluded)
    (e.weights_quantized ? qo.float_activations : qo.exclude).push_back(e.name);
  spdlog::info(
      "auto-exclude: output SQNR {:.1f} dB with every layer quantized, {:.1f} dB with {} "
      "kept in float (target {:.1f} dB)",
      result.sqnr_all_db, result.sqnr_final_db, result.excluded.size(), min_sqnr);
  return Status::ok();
}

nlohmann::ordered_json autoExcludeJson(const quant::AutoExcludeResult& r, double min_sqnr) {
  nlohmann::ordered_json j;
  j["min_sqnr_db"] = min_sqnr;
  j["sqnr_all_quantized_db"] = number(r.sqnr_all_db);
  j["sqnr_db"] = number(r.sqnr_final_db);
  j["target_met"] = r.target_met;
  auto arr = nlohmann::ordered_json::array();
  for (const auto& e : r.excluded)
    arr.push_back({{"name", e.name},
                   {"op", e.op},
                   {"solo_sqnr_db", number(e.solo_sqnr_db)},
                   {"kept_float", e.weights_quantized ? "input" : "layer"},
                   {"reason", e.reason}});
  j["float_layers"] = arr;
  return j;
}

// Combinations the formats cannot express fail before any work.
Status checkQuantizeOptions(const QuantizeCommandOptions& o, quant::QuantFormat format) {
  if (o.weight_bits != 8 && o.weight_bits != 4)
    return invalidArgument("--weight-bits must be 8 or 4");
  if (o.act_bits != 8 && o.act_bits != 4 && o.act_bits != 2)
    return invalidArgument("--act-bits must be 8, 4 or 2");
  const bool needs_calib = format != quant::QuantFormat::kWeightsOnly;
  if (needs_calib && o.calib.data.empty())
    return invalidArgument("--format " + o.format +
                           " quantizes activations and needs calibration data: add --calib SPEC "
                           "(e.g. a sample of the training set), or use --format weights-only");
  if (o.bias_correction && o.calib.data.empty())
    return invalidArgument("--bias-correction needs calibration data (--calib SPEC)");
  if (o.act_bits != 8 && format != quant::QuantFormat::kQdq &&
      format != quant::QuantFormat::kInteger)
    return invalidArgument("--act-bits " + std::to_string(o.act_bits) +
                           " needs --format qdq or integer");
  if (format == quant::QuantFormat::kInteger && (o.symmetric_activations || o.weight_bits != 8))
    return invalidArgument(
        "--format integer needs uint8 activations and --weight-bits 8 (ConvInteger's types)");
  if (format == quant::QuantFormat::kInteger && o.bias_correction)
    return invalidArgument("--bias-correction works with --format qdq or weights-only");
  if (o.bias_correction && format == quant::QuantFormat::kQOperator)
    return invalidArgument("--bias-correction works with --format qdq or weights-only");
  if (o.rounding != "balanced" && o.rounding != "nearest" && o.rounding != "adaround")
    return invalidArgument("--rounding must be balanced, nearest or adaround");
  if (o.rounding == "adaround" && o.calib.data.empty())
    return invalidArgument("--rounding adaround learns from calibration data: add --calib SPEC");
  if (o.rounding == "adaround" && format != quant::QuantFormat::kQdq &&
      format != quant::QuantFormat::kWeightsOnly)
    return invalidArgument("--rounding adaround works with --format qdq or weights-only");
  if (o.calib_size <= 0 && o.calib_size != -1)
    return invalidArgument("--calib-size must be positive (or -1 for all samples)");
  return Status::ok();
}

// Folds the BatchNorms into the layers before them, then the rest forward through a Relu where
// that costs no precision (else a float Mul/Add), and equalizes layer pairs when asked.
StatusOr<std::vector<quant::FoldedBatchNorm>> foldBatchNormsForQuantization(
    Model& model, const QuantizeCommandOptions& o, quant::QuantFormat format) {
  auto folded = quant::foldBatchNorms(*model.graph);
  if (!folded.isOk()) return folded.status();
  for (const auto& f : *folded) spdlog::info("folded {} into {}", f.batchnorm, f.into);
  // Through the Relu into the next layer only for 8-bit weights and activations: the rescaled
  // channels share int4 weight blocks / a 4-bit activation grid otherwise (densenet --act-bits 4
  // QDQ top-1 0.888 -> 0.856 that way).
  // Forward only where no weight or activation grid of the next layer gets wider (measured per
  // BN and logged); the others stay float per-channel Mul/Add.
  quant::RemainingBatchNormOptions rbo;
  rbo.into_next_layer = o.weight_bits == 8 && o.act_bits == 8;
  rbo.per_channel_weights = !o.per_tensor;
  rbo.quantized_activations = format != quant::QuantFormat::kWeightsOnly;
  auto rest = quant::foldRemainingBatchNorms(*model.graph, rbo);
  if (!rest.isOk()) return rest.status();
  for (const auto& f : *rest) {
    const std::string cost = f.next_layer.empty()
                                 ? ""
                                 : fmt::format(
                                       " (folding it forward into {} would cost {:.1f} dB weight "
                                       "SQNR, {:.1f} dB input SQNR in the worst channel)",
                                       f.next_layer, f.weight_sqnr_lost_db, f.act_sqnr_lost_db);
    if (f.into == "Mul/Add")
      spdlog::info("kept {} as a float per-channel Mul/Add{}", f.batchnorm, cost);
    else
      spdlog::info("folded {} into {} through its Relu{}", f.batchnorm, f.into, cost);
  }
  folded->insert(folded->end(), rest->begin(), rest->end());
  if (o.equalize) {
    auto eq = quant::equalizeLayers(*model.graph);
    if (!eq.isOk()) return eq.status();
    spdlog::info("equalized {} layer pairs in {} sweeps ({} Clip bounds made per-channel)",
                 eq->pairs, eq->sweeps, eq->clips_rewritten);
  }
  return std::move(folded).value();
}

// Quantized activations with per-channel weights: channel ranges of the tensors feeding depthwise
// convolutions evened out (free for the weights, act_equalize.h).
Status equalizeActivationsForQuantization(const QuantizeCommandOptions& o, bool quantized_acts,
                                          Model& model, data::SampleReader* reader) {
  if (!quantized_acts || o.per_tensor || reader == nullptr) return Status::ok();
  quant::ActEqualizeOptions ao;
  ao.samples = std::min<int64_t>(64, o.calib_size < 0 ? reader->size() : o.calib_size);
  ao.batch = batchFor(model, *reader, 32);
  ao.threads = o.threads;
  auto eq = quant::equalizeActivationRanges(model, *reader, ao);
  if (!eq.isOk()) return eq.status().withContext("activation equalization of " + o.model_path);
  if (eq->pairs > 0)
    spdlog::info(
        "activation equalization: evened the channel ranges into {} depthwise layers (largest "
        "channel multiplier {:.1f})",
        eq->pairs, eq->largest_multiplier);
  return Status::ok();
}

// Everything runQuantize computes that the reports (HTML, JSON, text table) print.
struct QuantizeRun {
  quant::QuantFormat format = quant::QuantFormat::kQdq;
  bool needs_calib = false;
  Totals before, after;
  int64_t opset = 0;
  int64_t converted_from = 0;
  std::vector<quant::FoldedBatchNorm> folded;
  std::vector<quant::QuantizedLayer> layers;
  int64_t non_finite = 0;  // NaN/inf values calibration left out
  quant::AutoExcludeResult auto_excluded;
  double min_sqnr = std::nan("");
  bool auto_exclude = false;
  int adarounded = 0;
  int corrected = 0;
  std::map<std::string, double> sqnr;
  double output_sqnr = std::nan("");

  double sqnrOf(const std::string& v) const {
    auto it = sqnr.find(v);
    return it == sqnr.end() ? std::nan("") : it->second;
  }
};

// Per-channel DequantizeLinear and --format integer need opset 13, per-tensor QDQ 10, int4
// weights 21: the version converter takes the model to 17 (the newest it knows), the quantizer
// bumps 17 -> 21 (quantize.cc, requireOpset).
Status raiseOpsetForQuantization(Model& model, const QuantizeCommandOptions& o, QuantizeRun& run) {
  const bool needs_13 = !o.per_tensor || run.format == quant::QuantFormat::kInteger;
  Status raised = raiseOpsetTo(model,
                               o.weight_bits == 4 ? 17
                               : needs_13         ? 13
                                                  : 10,
                               o.weight_bits == 4 ? "int4 weights (opset 21, bumped from 17)"
                               : needs_13         ? "per-channel QuantizeLinear/DequantizeLinear"
                                                  : "QuantizeLinear/DequantizeLinear",
                               &run.converted_from);
  if (!raised.isOk()) return raised.withContext(o.model_path);
  return Status::ok();
}

quant::QuantizeOptions quantizeOptionsOf(const QuantizeCommandOptions& o, quant::QuantFormat format,
                                         quant::QdqPlacement placement) {
  quant::QuantizeOptions qo;
  qo.format = format;
  qo.weight_bits = o.weight_bits;
  qo.act_bits = o.act_bits;
  qo.per_channel = !o.per_tensor;
  qo.symmetric_activations = o.symmetric_activations;
  qo.block_size = o.block_size;
  qo.exclude = o.exclude;
  qo.quantize_last = o.quantize_last;
  qo.balanced_rounding = o.rounding != "nearest";
  qo.placement = placement;
  return qo;
}

// Activation ranges of the values the targets quantize, from calibration histograms.
StatusOr<std::map<std::string, quant::Range>> calibrateRanges(
    const QuantizeCommandOptions& o, quant::CalibMethod method, const Model& model,
    const std::vector<quant::QuantTarget>& targets, const quant::QuantizeOptions& qo,
    data::SampleReader& reader, QuantizeRun& run) {
  std::map<std::string, quant::Range> ranges;
  const std::vector<std::string> names = quant::valuesToCalibrate(targets, qo);
  quant::CalibrationOptions co;
  co.calib_size = o.calib_size;
  co.threads = o.threads;
  co.batch = batchFor(model, reader, co.batch);
  auto hist = quant::collectHistograms(model, reader, names, co);
  if (!hist.isOk()) return hist.status().withContext("calibrating " + o.model_path);
  for (const auto& [name, h] : *hist) {
    ranges[name] = h.range(method, o.symmetric_activations, o.act_bits, o.percentile);
    if (h.nonFinite() > 0) {
      spdlog::warn("calibration: tensor '{}' had {} NaN/inf values (left out of its range)", name,
                   h.nonFinite());
      run.non_finite += h.nonFinite();
    }
  }
  spdlog::info("calibrated {} activations on {} samples ({})", ranges.size(),
               std::min<int64_t>(o.calib_size < 0 ? reader.size() : o.calib_size, reader.size()),
               o.calib_method);
  return ranges;
}

// --auto-exclude with its default SQNR target (30 dB at 8/8 bits, none otherwise): moves layers
// to qo.exclude and selects the targets again.
Status applyAutoExclude(const QuantizeCommandOptions& o, const Model& model,
                        const std::map<std::string, quant::Range>& ranges,
                        data::SampleReader* reader, quant::QuantizeOptions& qo,
                        std::vector<quant::QuantTarget>& targets, QuantizeRun& run) {
  run.min_sqnr = !std::isnan(o.min_sqnr)                 ? o.min_sqnr
                 : o.weight_bits == 8 && o.act_bits == 8 ? 30.0
                                                         : std::nan("");
  run.auto_exclude = o.auto_exclude && reader && !std::isnan(run.min_sqnr);
  if (o.auto_exclude && reader && !run.auto_exclude)
    spdlog::info(
        "auto-exclude: off for {}-bit weights / {}-bit activations unless --min-sqnr is "
        "given",
        o.weight_bits, o.act_bits);
  if (!run.auto_exclude) return Status::ok();
  NNC_RETURN_IF_ERROR(autoExclude(o, run.min_sqnr, model, ranges, *reader, qo, run.auto_excluded));
  auto reselected = quant::selectTargets(*model.graph, qo);
  if (!reselected.isOk()) return reselected.status().withContext(o.model_path);
  targets = std::move(reselected).value();
  return Status::ok();
}

// AdaRound and bias correction: weights re-fitted against the float reference.
Status refineQuantizedWeights(const QuantizeCommandOptions& o, const Model& reference, Model& model,
                              data::SampleReader* reader, QuantizeRun& run) {
  if (o.rounding == "adaround") {
    quant::AdaRoundOptions ao;
    ao.samples = std::min<int64_t>(256, o.calib_size < 0 ? reader->size() : o.calib_size);
    ao.batch = batchFor(model, *reader, 32);
    ao.threads = o.threads;
    auto a = quant::adaRoundModel(reference, model, run.layers, *reader, ao);
    if (!a.isOk()) return a.status().withContext("AdaRound on " + o.model_path);
    run.adarounded = *a;
    spdlog::info("AdaRound: re-rounded the weights of {} of {} layers", run.adarounded,
                 run.layers.size());
  }
  if (o.bias_correction) {
    auto c = quant::correctBiases(reference, model, run.layers, *reader,
                                  o.calib_size < 0 ? reader->size() : o.calib_size,
                                  batchFor(model, *reader, 32), o.threads);
    if (!c.isOk()) return c.status().withContext("bias correction of " + o.model_path);
    run.corrected = *c;
    spdlog::info("bias correction: corrected {} layers", run.corrected);
  }
  return Status::ok();
}

// SQNR of every quantized layer's output and of the model outputs against the float reference.
Status measureQuantizedSqnr(const QuantizeCommandOptions& o, const Model& reference,
                            const Model& model, data::SampleReader* reader, QuantizeRun& run) {
  if (!reader || o.sqnr_samples <= 0) return Status::ok();
  std::vector<quant::ValuePair> outputs;
  for (const auto& l : run.layers) outputs.emplace_back(l.output, l.quantized_output);
  const auto& ref_outputs = reference.graph->outputs();
  for (size_t i = 0; i < ref_outputs.size() && i < model.graph->outputs().size(); ++i)
    outputs.emplace_back(ref_outputs[i]->name(), model.graph->outputs()[i]->name());
  if (outputsFollowSelection(*reference.graph))  // the boxes and scores an NMS selects from
    for (const std::string& tap : fidelityTaps(*reference.graph)) outputs.emplace_back(tap, tap);
  auto s = quant::measureSqnr(reference, model, *reader, outputs, o.sqnr_samples,
                              batchFor(model, *reader, 32), o.threads);
  if (!s.isOk()) return s.status().withContext("measuring SQNR of " + o.output_path);
  run.sqnr = std::move(s).value();
  return Status::ok();
}

html::Table quantizedLayerTable(const QuantizeRun& run, html::BarSeries& sqnr_bars,
                                std::vector<std::string>& labels) {
  html::Table table{{"layer", "op", "weight bits", "act bits", "weight scale min",
                     "weight scale max", "act scale", "SQNR dB"},
                    {},
                    {false, false, true, true, true, true, true, true}};
  for (const auto& l : run.layers) {
    const double q = run.sqnrOf(l.output);
    labels.push_back(l.name);
    sqnr_bars.values.push_back(std::isnan(q) || std::isinf(q) ? 0 : q);
    char wmin[32], wmax[32], act[32], s[32];
    std::snprintf(wmin, sizeof wmin, "%.3e", l.weight_scale_min);
    std::snprintf(wmax, sizeof wmax, "%.3e", l.weight_scale_max);
    std::snprintf(act, sizeof act, "%.3e", l.act_scale);
    std::snprintf(s, sizeof s, "%.1f", q);
    table.rows.push_back({l.name, l.op, std::to_string(l.weight_bits),
                          l.act_bits ? std::to_string(l.act_bits) : "float", wmin, wmax,
                          l.act_bits ? act : "-", std::isnan(q) ? "-" : s});
  }
  return table;
}

Status writeQuantizeHtml(const QuantizeCommandOptions& o, const QuantizeRun& run) {
  html::HtmlPage page("nncompress quantize: " + o.model_path);
  page.addSection(
      "Summary",
      html::summaryTable(
          {{"model", o.model_path},
           {"output", o.output_path},
           {"format", o.format + ", weights int" + std::to_string(o.weight_bits) +
                          (o.per_tensor ? " per-tensor" : " per-channel") +
                          (run.needs_calib ? ", activations " + actLabel(o.act_bits) + " (" +
                                                 o.calib_method + ")"
                                           : "")},
           {"size", humanBytes(double(run.before.file_bytes)) + " -> " +
                        humanBytes(double(run.after.file_bytes))},
           {"params",
            humanCount(double(run.before.params)) + " -> " + humanCount(double(run.after.params))},
           {"BatchNorms folded", std::to_string(run.folded.size())},
           {"model output SQNR", std::isnan(run.output_sqnr)
                                     ? "-"
                                     : std::to_string(run.output_sqnr).substr(0, 5) + " dB"}}));
  std::vector<std::string> labels;
  html::BarSeries sqnr_bars{"SQNR dB", {}};
  const html::Table table = quantizedLayerTable(run, sqnr_bars, labels);
  page.addSection("Per-layer error",
                  "<p class=\"note\">SQNR of each quantized layer's output against the float "
                  "model on calibration samples: the lowest bars are the layers that hurt.</p>" +
                      html::barChart(labels, {sqnr_bars}, {"SQNR per layer", "dB", false}) +
                      html::table(table));
  if (!run.auto_excluded.excluded.empty()) {
    html::Table kept{{"layer", "op", "kept float", "output SQNR dB when quantized alone", "why"},
                     {},
                     {false, false, false, true, false}};
    for (const auto& e : run.auto_excluded.excluded)
      kept.rows.push_back({e.name, e.op, e.weights_quantized ? "input" : "layer",
                           std::to_string(e.solo_sqnr_db).substr(0, 5), e.reason});
    page.addSection("Kept in float (--auto-exclude)",
                    "<p class=\"note\">Output SQNR target " + std::to_string(run.min_sqnr) +
                        " dB; with every layer quantized the model reached " +
                        std::to_string(run.auto_excluded.sqnr_all_db) +
                        " dB. Most harmful layers first.</p>" + html::table(kept));
  }
  Status written = writeStringAtomically(o.html_report, page.render());
  if (!written.isOk()) return written.withContext(o.html_report);
  return Status::ok();
}

void printQuantizeJson(const QuantizeCommandOptions& o, const QuantizeRun& run) {
  nlohmann::ordered_json j;
  j["output"] = o.output_path;
  j["format"] = o.format;
  j["weight_bits"] = o.weight_bits;
  j["act_bits"] = run.needs_calib ? o.act_bits : 32;
  j["per_channel"] = !o.per_tensor;
  if (run.format == quant::QuantFormat::kQdq) j["qdq_placement"] = o.qdq_placement;
  if (run.needs_calib) {
    j["calib_method"] = o.calib_method;
    j["calib_size"] = o.calib_size;
    j["calib_nonfinite_values"] = run.non_finite;
  }
  j["before"] = run.before.json();
  j["after"] = run.after.json();
  j["opset"] = run.opset;
  if (run.converted_from) j["converted_from_opset"] = run.converted_from;
  j["batchnorms_folded"] = run.folded.size();
  j["bias_corrected_layers"] = run.corrected;
  j["rounding"] = o.rounding;
  if (o.rounding == "adaround") j["adaround_layers"] = run.adarounded;
  j["output_sqnr_db"] = number(run.output_sqnr);
  auto arr = nlohmann::ordered_json::array();
  for (const auto& l : run.layers) {
    nlohmann::ordered_json lj;
    lj["name"] = l.name;
    lj["op"] = l.op;
    lj["weight_bits"] = l.weight_bits;
    lj["act_bits"] = l.act_bits;
    lj["weight_scale_min"] = l.weight_scale_min;
    lj["weight_scale_max"] = l.weight_scale_max;
    if (l.act_bits) lj["act_scale"] = l.act_scale;
    lj["sqnr_db"] = number(run.sqnrOf(l.output));
    arr.push_back(lj);
  }
  j["layers"] = arr;
  if (run.auto_exclude) j["auto_exclude"] = autoExcludeJson(run.auto_excluded, run.min_sqnr);
  std::cout << j.dump(2) << "\n";
}

void printQuantizeTable(const QuantizeCommandOptions& o, const QuantizeRun& run) {
  std::printf(
      "Quantized %zu layers (%s, weights int%d %s%s), folded %zu BatchNorms\n\n", run.layers.size(),
      (run.format == quant::QuantFormat::kQdq ? o.format + " " + o.qdq_placement : o.format)
          .c_str(),
      o.weight_bits, o.per_tensor ? "per-tensor" : "per-channel",
      run.needs_calib ? (", activations " + actLabel(o.act_bits) + ", " + o.calib_method).c_str()
                      : "",
      run.folded.size());
  std::printf("  %-34s %-6s %5s %5s  %-21s %10s %9s\n", "layer", "op", "w", "act",
              "weight scale range", "act scale", "SQNR dB");
  for (const auto& l : run.layers) {
    char range[64], act[32], s[32];
    std::snprintf(range, sizeof range, "%.2e..%.2e", l.weight_scale_min, l.weight_scale_max);
    std::snprintf(act, sizeof act, "%.3e", l.act_scale);
    const double q = run.sqnrOf(l.output);
    std::snprintf(s, sizeof s, "%.1f", q);
    std::printf("  %-34s %-6s %5d %5s  %-21s %10s %9s\n", l.name.c_str(), l.op.c_str(),
                l.weight_bits, l.act_bits ? std::to_string(l.act_bits).c_str() : "float", range,
                l.act_bits ? act : "-", std::isnan(q) ? "-" : s);
  }
  if (!run.auto_excluded.excluded.empty()) {
    std::printf(
        "\n  kept float by --auto-exclude (output SQNR %.1f dB with every layer "
        "quantized, target %.1f dB):\n",
        run.auto_excluded.sqnr_all_db, run.min_sqnr);
    for (const auto& e : run.auto_excluded.excluded)
      std::printf("  %-34s %-6s %s\n", e.name.c_str(), e.op.c_str(), e.reason.c_str());
  }
  if (!std::isnan(run.output_sqnr))
    std::printf("\n  model output SQNR: %.1f dB\n", run.output_sqnr);
  std::printf("\n             before        after\n");
  auto line = [&](const char* label, int64_t b, int64_t a, bool bytes) {
    const std::string bs = bytes ? humanBytes(double(b)) : humanCount(double(b));
    const std::string as = bytes ? humanBytes(double(a)) : humanCount(double(a));
    std::printf("  %-10s %-13s %-13s\n", label, bs.c_str(), as.c_str());
  };
  line("params", run.before.params, run.after.params, false);
  line("MACs", run.before.macs, run.after.macs, false);
  line("file", run.before.file_bytes, run.after.file_bytes, true);
  std::printf("\nwrote %s\n", o.output_path.c_str());
}

}  // namespace

Status runQuantize(const QuantizeCommandOptions& o) {
  QuantizeRun run;
  NNC_ASSIGN_OR_RETURN(run.format, quant::parseQuantFormat(o.format));
  NNC_ASSIGN_OR_RETURN(const quant::CalibMethod method, quant::parseCalibMethod(o.calib_method));
  NNC_ASSIGN_OR_RETURN(const quant::QdqPlacement placement,
                       quant::parseQdqPlacement(o.qdq_placement));
  NNC_RETURN_IF_ERROR(checkQuantizeOptions(o, run.format));
  run.needs_calib = run.format != quant::QuantFormat::kWeightsOnly;
  NNC_RETURN_IF_ERROR(
      checkOutputPaths(o.model_path, {{"-o", o.output_path}, {"--report", o.html_report}}));

  LoadedModelInfo info;
  NNC_ASSIGN_OR_RETURN(Model model, loadInputModel(o.model_path, o.strict, &info));
  run.before = totalsOf(model, info.file_bytes + info.external_data_bytes);
  NNC_RETURN_IF_ERROR(raiseOpsetForQuantization(model, o, run));

  auto folded = foldBatchNormsForQuantization(model, o, run.format);
  if (!folded.isOk()) return folded.status().withContext(o.model_path);
  run.folded = std::move(folded).value();

  quant::QuantizeOptions qo = quantizeOptionsOf(o, run.format, placement);
  auto selected = quant::selectTargets(*model.graph, qo);
  if (!selected.isOk()) return selected.status().withContext(o.model_path);
  std::vector<quant::QuantTarget> targets = std::move(selected).value();

  std::unique_ptr<data::SampleReader> reader;
  if (!o.calib.data.empty()) {
    NNC_ASSIGN_OR_RETURN(reader, openReader(o.calib, model, "calibration data"));
  }
  NNC_RETURN_IF_ERROR(equalizeActivationsForQuantization(o, run.needs_calib, model, reader.get()));
  std::map<std::string, quant::Range> ranges;
  if (run.needs_calib) {
    NNC_ASSIGN_OR_RETURN(ranges, calibrateRanges(o, method, model, targets, qo, *reader, run));
  }
  NNC_RETURN_IF_ERROR(applyAutoExclude(o, model, ranges, reader.get(), qo, targets, run));
  auto reference = cloneModel(model);
  if (!reference.isOk()) return reference.status().withContext(o.model_path);
  auto layers = quant::quantizeModel(model, targets, ranges, qo);
  if (!layers.isOk()) return layers.status().withContext(o.model_path);
  run.layers = std::move(layers).value();
  NNC_RETURN_IF_ERROR(refineQuantizedWeights(o, *reference, model, reader.get(), run));
  NNC_RETURN_IF_ERROR(measureQuantizedSqnr(o, *reference, model, reader.get(), run));

  // After SQNR and bias correction, which find tensors by name.
  // Integer-only models keep float32 constants: their outputs must stay bit-identical.
  auto compacted = quant::compactModel(
      model, {o.keep_names, !o.fp32_storage && run.format != quant::QuantFormat::kInteger});
  if (!compacted.isOk()) return compacted.status().withContext(o.output_path);
  run.after = totalsOf(model, 0);
  run.opset = model.opsetVersion("");
  WrittenModel output(o.output_path);
  NNC_RETURN_IF_ERROR(output.write(model, info, &*reference));
  std::error_code ec;
  run.after.file_bytes = static_cast<int64_t>(std::filesystem::file_size(o.output_path, ec));
  if (!run.sqnr.empty()) {
    // The first output; past a NonMaxSuppression, the worst of the boxes and scores it reads.
    std::vector<std::string> taps = fidelityTaps(*reference->graph);
    if (!outputsFollowSelection(*reference->graph) && !taps.empty()) taps.resize(1);
    for (const std::string& tap : taps)
      run.output_sqnr = std::isnan(run.output_sqnr) ? run.sqnrOf(tap)
                                                    : std::fmin(run.output_sqnr, run.sqnrOf(tap));
  }

  if (!o.html_report.empty()) NNC_RETURN_IF_ERROR(writeQuantizeHtml(o, run));
  output.keep();
  if (o.json)
    printQuantizeJson(o, run);
  else
    printQuantizeTable(o, run);
  return Status::ok();
}

}  // namespace nnc::cli
