#include "nncompress/quant/auto_exclude.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <set>

#include "nncompress/analysis/fidelity_taps.h"
#include "nncompress/exec/executor.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/quant/compact.h"

namespace nnc::quant {
namespace {

// The float model's outputs on the first samples, held once for every trial. Past a
// NonMaxSuppression, the boxes and scores it selects from instead (fidelity_taps.h).
class OutputSqnrProbe {
 public:
  static StatusOr<OutputSqnrProbe> create(const Model& reference, data::SampleReader& reader,
                                          const AutoExcludeOptions& o) {
    OutputSqnrProbe probe(reader, o);
    probe.total_ = std::min(o.samples, reader.size());
    if (outputsFollowSelection(*reference.graph)) probe.taps_ = fidelityTaps(*reference.graph);
    NNC_ASSIGN_OR_RETURN(probe.reference_, probe.runAll(reference));
    return probe;
  }

  // min over samples and outputs of 10 log10(signal / noise) (+inf when every output is exact).
  StatusOr<double> sqnr(const Model& quantized) {
    NNC_ASSIGN_OR_RETURN(auto got, runAll(quantized));
    double worst = std::numeric_limits<double>::infinity();
    for (size_t b = 0; b < got.size() && b < reference_.size(); ++b)
      for (size_t o = 0; o < got[b].size() && o < reference_[b].size(); ++o)
        worst = std::min(worst, worstSampleSqnr(reference_[b][o], got[b][o], batch_sizes_[b]));
    return worst;
  }

 private:
  // Per sample when the output's first dim is the batch, else over the whole tensor.
  static double worstSampleSqnr(const Tensor& r, const Tensor& q, int64_t batch) {
    if (r.dtype() != DType::kFloat32 || q.dtype() != DType::kFloat32 || r.numel() != q.numel() ||
        r.numel() == 0)
      return std::numeric_limits<double>::infinity();
    const int64_t rows = r.rank() > 0 && r.dim(0) == batch ? batch : 1;
    const int64_t per = r.numel() / rows;
    const auto rd = r.data<float>(), qd = q.data<float>();
    double worst = std::numeric_limits<double>::infinity();
    for (int64_t s = 0; s < rows; ++s) {
      double signal = 0, noise = 0;
      for (int64_t i = s * per; i < (s + 1) * per; ++i) {
        signal += double(rd[i]) * rd[i];
        noise += (double(rd[i]) - qd[i]) * (double(rd[i]) - qd[i]);
      }
      // An all-zero output says nothing about the error.
      if (signal > 0 && noise > 0) worst = std::min(worst, 10 * std::log10(signal / noise));
    }
    return worst;
  }

  OutputSqnrProbe(data::SampleReader& reader, const AutoExcludeOptions& o)
      : reader_(&reader), options_(o) {}

  StatusOr<std::vector<std::vector<Tensor>>> runAll(const Model& model) {
    exec::ExecutorOptions eo;
    eo.num_threads = options_.threads;
    NNC_ASSIGN_OR_RETURN(auto ex, exec::Executor::create(model, eo));
    std::vector<std::vector<Tensor>> outputs;
    const int64_t batch = std::max<int64_t>(1, options_.batch);
    for (int64_t start = 0; start < total_; start += batch) {
      const int64_t count = std::min(batch, total_ - start);
      NNC_ASSIGN_OR_RETURN(std::vector<Tensor> feeds, reader_->readFeeds(start, count));
      if (batch_sizes_.size() < size_t(start / batch) + 1) batch_sizes_.push_back(count);
      NNC_ASSIGN_OR_RETURN(auto out, runBatch(*ex, std::move(feeds)));
      outputs.push_back(std::move(out));
    }
    return outputs;
  }

  // The graph outputs, or the taps.
  StatusOr<std::vector<Tensor>> runBatch(exec::Executor& ex, std::vector<Tensor> feeds) {
    return taps_.empty() ? ex.run(std::move(feeds)) : ex.runValues(std::move(feeds), taps_);
  }

  data::SampleReader* reader_;
  AutoExcludeOptions options_;
  std::vector<std::string> taps_;  // empty: compare the graph outputs
  int64_t total_ = 0;
  std::vector<int64_t> batch_sizes_;
  std::vector<std::vector<Tensor>> reference_;
};

// Output SQNR of the float model quantized with `options` plus `whole` layers kept float and
// `float_input` layers kept with a float input (weights quantized).
StatusOr<double> trialSqnr(const Model& float_model, QuantizeOptions options,
                           const std::map<std::string, Range>& ranges,
                           const std::vector<std::string>& whole,
                           const std::vector<std::string>& float_input, OutputSqnrProbe& probe,
                           bool float16_storage) {
  options.exclude.insert(options.exclude.end(), whole.begin(), whole.end());
  options.float_activations.insert(options.float_activations.end(), float_input.begin(),
                                   float_input.end());
  NNC_ASSIGN_OR_RETURN(Model trial, cloneModel(float_model));
  NNC_ASSIGN_OR_RETURN(auto targets, selectTargets(*trial.graph, options));
  NNC_ASSIGN_OR_RETURN(auto layers, quantizeModel(trial, targets, ranges, options));
  (void)layers;
  // What the written file computes (float16 biases, weight scales, BN Mul/Add vectors).
  NNC_ASSIGN_OR_RETURN(auto compacted, compactModel(trial, {true, float16_storage}));
  (void)compacted;
  return probe.sqnr(trial);
}

std::vector<std::string> namesOf(const std::vector<ExcludedLayer>& layers) {
  std::vector<std::string> names;
  for (const ExcludedLayer& l : layers) names.push_back(l.name);
  return names;
}

std::string dbText(double db) {
  if (std::isinf(db)) return "inf";
  char s[32];
  std::snprintf(s, sizeof s, "%.1f", db);
  return s;
}

}  // namespace

Status quantizeUnneededFloatLayers(std::vector<ExcludedLayer>& kept, double& sqnr_db,
                                   const FloatSetTrial& trial, double min_sqnr_db) {
  for (size_t j = kept.size(); j-- > 0;) {
    std::vector<std::string> names;
    for (size_t i = 0; i < kept.size(); ++i)
      if (i != j) names.push_back(kept[i].name);
    NNC_ASSIGN_OR_RETURN(double s, trial(names));
    if (s < min_sqnr_db) continue;
    spdlog::debug("auto-exclude: {} quantized again: output SQNR {:.1f} dB", kept[j].name, s);
    kept.erase(kept.begin() + int64_t(j));
    sqnr_db = s;
  }
  return Status::ok();
}

namespace {

// Steps 3-4: the shortest prefix of `harm` (most harmful first) that `trial` says meets the
// target, found by doubling then bisection (the output SQNR grows with the prefix, so this is the
// greedy's answer in O(log L) trials), less the layers it then does not need. `sqnr_db` gets the
// SQNR of what is returned (below the target when even the whole list misses it).
StatusOr<std::vector<ExcludedLayer>> fewestKeptFloat(const std::vector<ExcludedLayer>& harm,
                                                     const FloatSetTrial& trial, double min_sqnr_db,
                                                     double& sqnr_db) {
  std::map<size_t, double> tried;  // prefix length -> output SQNR
  auto sqnrOfPrefix = [&](size_t m) -> StatusOr<double> {
    if (auto it = tried.find(m); it != tried.end()) return it->second;
    std::vector<std::string> kept_float;
    for (size_t i = 0; i < m; ++i) kept_float.push_back(harm[i].name);
    NNC_ASSIGN_OR_RETURN(double s, trial(kept_float));
    spdlog::debug("auto-exclude: {} most harmful layers float: output SQNR {:.1f} dB", m, s);
    return tried[m] = s;
  };
  size_t lo = 0, hi = 1;  // SQNR(lo) misses the target
  for (;; hi = std::min(harm.size(), hi * 2)) {
    NNC_ASSIGN_OR_RETURN(double s, sqnrOfPrefix(hi));
    if (s >= min_sqnr_db || hi == harm.size()) break;
    lo = hi;
  }
  while (hi - lo > 1) {
    const size_t mid = (lo + hi) / 2;
    NNC_ASSIGN_OR_RETURN(double s, sqnrOfPrefix(mid));
    (s >= min_sqnr_db ? hi : lo) = mid;
  }
  NNC_ASSIGN_OR_RETURN(sqnr_db, sqnrOfPrefix(hi));
  std::vector<ExcludedLayer> kept(harm.begin(), harm.begin() + int64_t(hi));
  if (sqnr_db >= min_sqnr_db)
    NNC_RETURN_IF_ERROR(quantizeUnneededFloatLayers(kept, sqnr_db, trial, min_sqnr_db));
  return kept;
}

// Output SQNR with `whole` layers kept float and `float_input` layers kept with a float input.
using SplitTrial = std::function<StatusOr<double>(const std::vector<std::string>& whole,
                                                  const std::vector<std::string>& float_input)>;

// QDQ: steps 3-4 twice. First the weights' own error: with every input float (`all`), the whole
// layers the target needs. Then, with those float, the fewest layers kept with a float input.
Status keepFloatWholeOrInput(const std::vector<ExcludedLayer>& harm,
                             const std::vector<std::string>& all, const SplitTrial& trial,
                             double target, std::vector<ExcludedLayer>& whole,
                             std::vector<ExcludedLayer>& inputs, double& sqnr_db) {
  const FloatSetTrial weights_trial = [&](const std::vector<std::string>& kept) {
    return trial(kept, all);
  };
  NNC_ASSIGN_OR_RETURN(double weights_only, weights_trial({}));
  if (weights_only < target) {
    NNC_ASSIGN_OR_RETURN(whole, fewestKeptFloat(harm, weights_trial, target, weights_only));
  }
  const std::vector<std::string> whole_names = namesOf(whole);
  std::vector<ExcludedLayer> rest;
  for (const ExcludedLayer& l : harm)
    if (std::find(whole_names.begin(), whole_names.end(), l.name) == whole_names.end())
      rest.push_back(l);
  const FloatSetTrial input_trial = [&](const std::vector<std::string>& kept) {
    return trial(whole_names, kept);
  };
  NNC_ASSIGN_OR_RETURN(sqnr_db, input_trial({}));
  if (sqnr_db < target && !rest.empty()) {
    NNC_ASSIGN_OR_RETURN(inputs, fewestKeptFloat(rest, input_trial, target, sqnr_db));
  }
  for (ExcludedLayer& l : inputs) l.weights_quantized = true;
  return Status::ok();
}

}  // namespace

StatusOr<AutoExcludeResult> chooseFloatLayers(const Model& float_model,
                                              const QuantizeOptions& options,
                                              const std::map<std::string, Range>& ranges,
                                              data::SampleReader& reader,
                                              const AutoExcludeOptions& auto_options) {
  AutoExcludeResult result;
  const bool fp16 = auto_options.float16_storage;
  NNC_ASSIGN_OR_RETURN(auto probe, OutputSqnrProbe::create(float_model, reader, auto_options));
  NNC_ASSIGN_OR_RETURN(result.sqnr_all_db,
                       trialSqnr(float_model, options, ranges, {}, {}, probe, fp16));
  result.sqnr_final_db = result.sqnr_all_db;
  result.target_met = result.sqnr_all_db >= auto_options.min_sqnr_db;
  if (result.target_met) return result;

  NNC_ASSIGN_OR_RETURN(auto targets, selectTargets(*float_model.graph, options));
  std::vector<std::string> names;
  for (const QuantTarget& t : targets) names.push_back(t.name);
  // Each layer alone: every other target kept float.
  std::vector<ExcludedLayer> harm;
  for (size_t i = 0; i < targets.size(); ++i) {
    std::vector<std::string> others = names;
    others.erase(others.begin() + int64_t(i));
    NNC_ASSIGN_OR_RETURN(double solo,
                         trialSqnr(float_model, options, ranges, others, {}, probe, fp16));
    harm.push_back({names[i], targets[i].node->opType(), solo, "", false});
  }
  std::stable_sort(harm.begin(), harm.end(), [](const ExcludedLayer& a, const ExcludedLayer& b) {
    return a.solo_sqnr_db < b.solo_sqnr_db;
  });
  if (harm.empty()) return result;
  const double target = auto_options.min_sqnr_db;
  const SplitTrial trial = [&](const std::vector<std::string>& whole,
                               const std::vector<std::string>& float_input) {
    return trialSqnr(float_model, options, ranges, whole, float_input, probe, fp16);
  };
  std::vector<ExcludedLayer> whole, inputs;
  if (options.format == QuantFormat::kQdq) {
    NNC_RETURN_IF_ERROR(
        keepFloatWholeOrInput(harm, names, trial, target, whole, inputs, result.sqnr_final_db));
  } else {
    const FloatSetTrial whole_trial = [&](const std::vector<std::string>& kept) {
      return trial(kept, {});
    };
    NNC_ASSIGN_OR_RETURN(whole, fewestKeptFloat(harm, whole_trial, target, result.sqnr_final_db));
  }
  const std::string kept_text =
      std::to_string(whole.size()) + " kept float and " + std::to_string(inputs.size()) +
      " kept with a float input (weights quantized) bring the model to " +
      dbText(result.sqnr_final_db) + " dB (target " + dbText(target) + ")";
  for (const auto* list : {&whole, &inputs})
    for (ExcludedLayer layer : *list) {
      size_t rank = 0;  // position in the harm order
      while (rank < harm.size() && harm[rank].name != layer.name) ++rank;
      layer.reason = "quantized alone it takes the output SQNR to " + dbText(layer.solo_sqnr_db) +
                     " dB (number " + std::to_string(rank + 1) + " of " +
                     std::to_string(harm.size()) + " by harm); the " + kept_text;
      spdlog::info("auto-exclude: keeping {} ({}) {}: {}", layer.name, layer.op,
                   layer.weights_quantized ? "with a float input" : "in float", layer.reason);
      result.excluded.push_back(std::move(layer));
    }
  result.target_met = result.sqnr_final_db >= auto_options.min_sqnr_db;
  return result;
}

}  // namespace nnc::quant
