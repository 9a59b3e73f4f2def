#include "nncompress/pipeline/compress_actions.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <functional>
#include <map>
#include <optional>

#include "nncompress/analysis/channel_groups.h"
#include "nncompress/ir/weight_layout.h"
#include "nncompress/pipeline/evaluate.h"
#include "nncompress/prune/allocation.h"
#include "nncompress/prune/criteria.h"
#include "nncompress/prune/feature_stats.h"
#include "nncompress/prune/iterative.h"
#include "nncompress/prune/recovery.h"
#include "nncompress/quant/adaround.h"
#include "nncompress/quant/bn_fold.h"
#include "nncompress/quant/calibration.h"
#include "nncompress/quant/compact.h"
#include "nncompress/quant/quantize.h"

namespace nnc {
namespace {

// Identifies a float model by its weights and structure: calibrated ranges are cached per model,
// and the controller quantizes the same checkpoint many times.
size_t fingerprint(const Model& model) {
  size_t h = model.graph->numNodes();
  for (const Value* v : model.graph->initializers())
    h = h * 1000003u ^ std::hash<std::string_view>{}(v->initializer()->bytes());
  for (const auto& n : model.graph->nodes())
    if (n->output(0)) h = h * 31u ^ std::hash<std::string>{}(n->output(0)->name());
  return h;
}

struct State {
  CompressSetup setup;
  std::unique_ptr<exec::Executor> reference;  // the original, when quality is agreement
  std::map<size_t, std::map<std::string, quant::Range>> ranges_by_model;
  // The BN-folded copy of the last checkpoint asked for: the controller quantizes one pruned
  // checkpoint many times (and lists its layers), so it is folded once.
  size_t folded_key = 0;
  std::optional<Model> folded;
};

CalibrationSource calibrationOf(const CompressSetup& s) {
  return {s.calib_data, s.calib_size, s.batch, s.threads};
}

StatusOr<double> measureQuality(State& state, const Model& model, int64_t limit) {
  const CompressSetup& s = state.setup;
  NNC_ASSIGN_OR_RETURN(auto executor, exec::Executor::create(model, {s.threads}));
  EvalOptions options;
  options.limit = limit;
  options.classes = s.classes;
  options.require_classes = !s.fidelity;
  options.progress = s.eval_progress;
  options.batch = effectiveBatch(*executor, *s.eval_data, s.batch);
  NNC_ASSIGN_OR_RETURN(EvalResult r, evaluate(*executor, *s.eval_data, s.labels,
                                              s.labels ? nullptr : state.reference.get(), options));
  if (s.labels) return r.top1.value_or(0);
  if (s.fidelity) return r.fidelity.value_or(0);
  return r.agreement.value_or(0);
}

// One global-allocation step of `fraction` of the prunable channels, recovered against `model`
// (prune/iterative.h: the same step `nncompress prune --steps` takes).
StatusOr<Model> pruneAndRecover(State& state, const Model& model, double fraction) {
  const CompressSetup& s = state.setup;
  const ChannelAnalysis analysis = analyzeChannels(model);
  const CalibrationSource calibration = calibrationOf(s);
  PruneStepOptions step;
  step.criterion = s.criterion;
  step.calibration = &calibration;
  step.allocation.mode = AllocationMode::kGlobal;
  step.allocation.ratio = fraction;
  step.allocation.floor = s.min_group_keep;
  step.allocation.exclude = s.exclude;
  step.allocation.exact_only = s.exact_only;
  NNC_ASSIGN_OR_RETURN(PruneStepResult pruned, pruneStep(model, analysis, step));
  if (pruned.allocation.plan.empty())
    return Status(StatusCode::kTargetNotMet, "no channel left to prune");
  if (s.recovery != "none") {
    NNC_ASSIGN_OR_RETURN(auto layers,
                         recoverPruned(model, pruned.pruned, analysis, pruned.allocation.plan,
                                       s.recovery, calibration));
    (void)layers;
  }
  return std::move(pruned.pruned);
}

// Balanced rounding by default; nearest for weights trained with fake quantization (which
// rounds to nearest: re-balancing would undo what training adapted to).
quant::QuantizeOptions quantizeOptions(const CompressSetup& s, const BitPlan& bits,
                                       bool nearest = false) {
  quant::QuantizeOptions qo;
  qo.format = quant::QuantFormat::kQdq;
  qo.exclude = s.exclude;
  qo.layer_weight_bits = bits;
  if (nearest) qo.balanced_rounding = false;
  return qo;
}

StatusOr<Model> foldedCopy(const Model& model) {
  Model copy = model.clone();
  NNC_ASSIGN_OR_RETURN(auto folded, quant::foldBatchNorms(*copy.graph));
  (void)folded;
  return copy;
}

StatusOr<const Model*> foldedOf(State& state, const Model& model, size_t key) {
  if (!state.folded || state.folded_key != key) {
    state.folded.reset();
    NNC_ASSIGN_OR_RETURN(Model copy, foldedCopy(model));
    state.folded = std::move(copy);
    state.folded_key = key;
  }
  return &*state.folded;
}

struct Quantized {
  Model model;
  std::vector<quant::QuantizedLayer> layers;
  const Model* folded = nullptr;  // the float model it was quantized from
};

StatusOr<Quantized> quantizeWithLayers(State& state, const Model& model, const BitPlan& bits,
                                       bool nearest = false) {
  const CompressSetup& s = state.setup;
  const size_t key = fingerprint(model);
  NNC_ASSIGN_OR_RETURN(const Model* folded, foldedOf(state, model, key));
  Model q = folded->clone();
  const quant::QuantizeOptions qo = quantizeOptions(s, bits, nearest);
  NNC_ASSIGN_OR_RETURN(auto targets, quant::selectTargets(*q.graph, qo));
  auto cached = state.ranges_by_model.find(key);
  if (cached == state.ranges_by_model.end()) {
    // Ranges are cached per model, for every bit plan: calibrate what the all-8-bit plan needs
    // (a superset: int4 layers only drop output Q/DQ pairs from the ort placement).
    quant::QuantizeOptions all8 = qo;
    all8.layer_weight_bits.clear();
    const std::vector<std::string> names = quant::valuesToCalibrate(targets, all8);
    quant::CalibrationOptions co;
    co.calib_size = s.calib_size;
    co.batch = s.batch;
    co.threads = s.threads;
    NNC_ASSIGN_OR_RETURN(auto histograms, quant::collectHistograms(q, *s.calib_data, names, co));
    NNC_ASSIGN_OR_RETURN(const quant::CalibMethod method, quant::parseCalibMethod(s.calib_method));
    std::map<std::string, quant::Range> ranges;
    for (const auto& [name, h] : histograms) ranges[name] = h.range(method, false, 8);
    cached = state.ranges_by_model.emplace(key, std::move(ranges)).first;
  }
  NNC_ASSIGN_OR_RETURN(auto layers, quant::quantizeModel(q, targets, cached->second, qo));
  return Quantized{std::move(q), std::move(layers), folded};
}

StatusOr<Model> quantizeWith(State& state, const Model& model, const BitPlan& bits) {
  NNC_ASSIGN_OR_RETURN(Quantized q, quantizeWithLayers(state, model, bits));
  return std::move(q.model);
}

// quantizeWith, then AdaRound (METHODS.md section 8) on the layers `bits` lowers below 8 bits,
// fitted on up to 256 calibration samples; the iterations scale with the samples (8 per sample,
// 200..2000), so a small calibration set costs a short fit instead of 2000 steps per layer.
StatusOr<std::pair<Model, int>> learnedRoundingWith(State& state, const Model& model,
                                                    const BitPlan& bits) {
  const CompressSetup& s = state.setup;
  NNC_ASSIGN_OR_RETURN(Quantized q, quantizeWithLayers(state, model, bits));
  std::vector<quant::QuantizedLayer> low;
  for (const auto& l : q.layers)
    if (l.weight_bits > 0 && l.weight_bits < 8) low.push_back(l);
  if (low.empty()) return std::pair<Model, int>{std::move(q.model), 0};
  quant::AdaRoundOptions ao;
  const int64_t available = s.calib_data->size();
  ao.samples =
      std::min<int64_t>(256, s.calib_size < 0 ? available : std::min(s.calib_size, available));
  ao.iterations = int(std::clamp<int64_t>(8 * ao.samples, 200, 2000));
  ao.batch = std::min<int64_t>(32, s.batch);
  ao.threads = s.threads;
  NNC_ASSIGN_OR_RETURN(int rounded,
                       quant::adaRoundModel(*q.folded, q.model, low, *s.calib_data, ao));
  spdlog::info("compress: AdaRound re-rounded {} of {} low-bit layers ({} samples, {} iterations)",
               rounded, low.size(), ao.samples, ao.iterations);
  return std::pair<Model, int>{std::move(q.model), rounded};
}

// Distillation from the original on the calibration data (compress --finetune).
StatusOr<Model> retrainWith(State& state, const Model& model) {
  const CompressSetup& s = state.setup;
  Model student = model.clone();
  NNC_ASSIGN_OR_RETURN(FinetuneResult r,
                       finetune(student, *s.original, *s.calib_data, *s.finetune));
  (void)r;
  return student;
}

// Fake quantization of a layer's weight as the quantizer stores it at `bits` (quantize.cc):
// 8 bits per output channel; 4 bits in blocks of about `block_size` along the reduction of each
// output channel (one block: per channel), symmetric, qmax = 2^(bits-1) - 1. Weights whose
// reduction runs along axis 0 ([K, N]: Gemm without transB, MatMul) are approximated per output
// channel when they would be blocked.
train::FakeQuantFn weightFakeQuant(const Node& layer, int bits, int64_t block_size) {
  const auto layout = weightLayout(layer);
  const bool out_first = layout && layout->out_axis == 0;
  return [out_first, bits, block_size](const Tensor& w) {
    train::FakeQuantSpec spec;
    spec.qmax = (1 << (bits - 1)) - 1;
    spec.qmin = -spec.qmax;
    const int64_t rows = out_first ? w.dim(0) : w.dim(w.rank() - 1);
    const int64_t k = w.numel() / std::max<int64_t>(1, rows);
    const int64_t wanted = bits == 4 ? std::max<int64_t>(1, (k + block_size / 2) / block_size) : 1;
    const int64_t block = out_first && wanted > 1 ? (k + wanted - 1) / wanted : k;
    const int64_t blocks = (k + block - 1) / block;
    spec.axis = out_first ? 0 : w.rank() - 1;
    spec.block_size = out_first && wanted > 1 ? block : 0;
    spec.scales.assign(rows * blocks, 0.f);
    const auto d = w.data<float>();
    for (int64_t i = 0; i < w.numel(); ++i) {
      const int64_t r = out_first ? i / k : i % rows;
      const int64_t j = out_first ? i % k : 0;
      float& s = spec.scales[r * blocks + j / block];
      s = std::max(s, std::abs(d[i]));
    }
    for (float& s : spec.scales) s = s > 0 ? s / float(spec.qmax) : 1.f;
    return spec;
  };
}

// The BN-folded copy of `model` (what the quantizer sees) retrained with the weights of the
// layers in `bits` fake-quantized like the quantizer will quantize them (weightFakeQuant),
// then quantized with the rounding the training simulated (nearest); BatchNorm is folded first
// so the trained weights are the quantized ones.
StatusOr<Model> qatWith(State& state, const Model& model, const BitPlan& bits) {
  const CompressSetup& s = state.setup;
  NNC_ASSIGN_OR_RETURN(Model student, foldedCopy(model));
  NNC_ASSIGN_OR_RETURN(auto targets,
                       quant::selectTargets(*student.graph, quantizeOptions(s, bits)));
  FinetuneOptions o = *s.finetune;
  const int64_t block_size = quant::QuantizeOptions{}.block_size;
  for (const quant::QuantTarget& t : targets) {
    auto it = bits.find(t.name);
    if (it == bits.end() || it->second >= 8 || t.node->numInputs() < 2 || !t.node->input(1))
      continue;
    if (!t.node->input(1)->isInitializer()) continue;
    o.fake_quant[t.node->input(1)->name()] = weightFakeQuant(*t.node, it->second, block_size);
  }
  spdlog::info("compress: quantization-aware training with {} of {} planned layers fake-quantized",
               o.fake_quant.size(), bits.size());
  NNC_ASSIGN_OR_RETURN(FinetuneResult r, finetune(student, *s.original, *s.calib_data, o));
  (void)r;
  NNC_ASSIGN_OR_RETURN(Quantized q, quantizeWithLayers(state, student, bits, /*nearest=*/true));
  return std::move(q.model);
}

}  // namespace

StatusOr<Model> exportedForm(const Model& model, bool keep_names) {
  Model out = model.clone();
  quant::CompactOptions options;
  options.keep_names = keep_names;
  options.float16_storage = false;  // the accuracy compress measured must be the file's
  NNC_RETURN_IF_ERROR(quant::compactModel(out, options).status());
  return out;
}

Status chooseQuality(CompressSetup& setup, const std::string& force) {
  setup.fidelity = force == "fidelity";
  if (setup.labels && force != "auto")
    return invalidArgument("--quality " + force +
                           " compares with the original, and the labels ask for accuracy: give "
                           "one or the other");
  if (setup.labels || force != "auto") return Status::ok();
  NNC_ASSIGN_OR_RETURN(auto executor, exec::Executor::create(*setup.original, {setup.threads}));
  EvalOptions options;
  options.limit = effectiveBatch(*executor, *setup.eval_data, 1);  // one sample, or the fixed batch
  options.classes = setup.classes;
  NNC_ASSIGN_OR_RETURN(EvalResult r,
                       evaluate(*executor, *setup.eval_data, nullptr, nullptr, options));
  setup.fidelity = !r.class_scores;
  return Status::ok();
}

const char* qualityName(const CompressSetup& setup) {
  return setup.labels ? "accuracy" : setup.fidelity ? "fidelity" : "agreement";
}

StatusOr<CompressActions> makeCompressActions(const CompressSetup& setup) {
  if (!setup.original || !setup.eval_data || !setup.calib_data || !setup.serialized_size)
    return invalidArgument(
        "compress needs a model, evaluation data, calibration data and a serializer");
  auto state = std::make_shared<State>();
  state->setup = setup;
  if (!setup.labels) {
    NNC_ASSIGN_OR_RETURN(state->reference,
                         exec::Executor::create(*setup.original, {setup.threads}));
  }
  CompressActions a;
  a.quality = [state](const Model& m) { return measureQuality(*state, m, state->setup.eval_size); };
  const int64_t eval_count = setup.eval_size < 0
                                 ? setup.eval_data->size()
                                 : std::min(setup.eval_size, setup.eval_data->size());
  if (setup.quick_size > 0 && eval_count >= 2 * setup.quick_size)
    a.quick_quality = [state](const Model& m) {
      return measureQuality(*state, m, state->setup.quick_size);
    };
  a.size = [keep_names = setup.keep_names,
            size = setup.serialized_size](const Model& m) -> StatusOr<int64_t> {
    NNC_ASSIGN_OR_RETURN(Model exported, exportedForm(m, keep_names));
    return size(exported);
  };
  a.prune = [state](const Model& m, double fraction) {
    return pruneAndRecover(*state, m, fraction);
  };
  a.quantizable_layers = [state](const Model& m) {
    std::vector<std::string> names;
    auto folded = foldedOf(*state, m, fingerprint(m));
    if (!folded.isOk()) return names;
    auto targets = quant::selectTargets(*(*folded)->graph, quantizeOptions(state->setup, {}));
    if (!targets.isOk()) return names;
    for (const auto& t : *targets) names.push_back(t.name);
    return names;
  };
  a.quantize = [state](const Model& m, const BitPlan& bits) {
    return quantizeWith(*state, m, bits);
  };
  if (setup.learned_rounding)
    a.learned_rounding = [state](const Model& m, const BitPlan& bits) {
      return learnedRoundingWith(*state, m, bits);
    };
  if (setup.finetune) {
    a.retrain = [state](const Model& m) { return retrainWith(*state, m); };
    if (setup.qat)
      a.qat = [state](const Model& m, const BitPlan& bits) { return qatWith(*state, m, bits); };
  }
  a.log = [](const std::string& line) { spdlog::info("compress: {}", line); };
  return a;
}

}  // namespace nnc
