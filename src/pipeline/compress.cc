#include "nncompress/pipeline/compress.h"

#include <algorithm>
#include <cstdio>
#include <deque>

namespace nnc {
namespace {

std::string percentText(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g%%", 100 * fraction);
  return buf;
}

std::string qualityText(double q) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", q);
  return buf;
}

class Controller {
 public:
  Controller(const CompressTargets& targets, const CompressActions& actions)
      : targets_(targets), actions_(actions) {}

  StatusOr<CompressResult> run(const Model& original) {
    original_ = &original;
    NNC_ASSIGN_OR_RETURN(result_.baseline_quality, actions_.quality(original));
    NNC_ASSIGN_OR_RETURN(result_.baseline_bytes, actions_.size(original));
    demand_ = result_.baseline_quality - targets_.max_drop;
    record("baseline", "original model", result_.baseline_bytes, result_.baseline_quality, true);
    result_.best_quality = result_.baseline_quality;
    result_.best_bytes = result_.baseline_bytes;
    log("baseline quality " + qualityText(result_.baseline_quality) + ", demand >= " +
        qualityText(demand_) + ", size " + std::to_string(result_.baseline_bytes) + " bytes");

    double reserve = 0;
    if (targets_.quantize) {
      NNC_ASSIGN_OR_RETURN(Model q8, actions_.quantize(original, {}));
      NNC_ASSIGN_OR_RETURN(double q, actions_.quality(q8));
      NNC_ASSIGN_OR_RETURN(int64_t bytes, actions_.size(q8));
      reserve = std::max(0.0, result_.baseline_quality - q);
      record("quantize", "8-bit weights on the original (measures the reserve)", bytes, q,
             q >= demand_);
      log("8-bit quantization alone costs " + qualityText(reserve) +
          "; pruning keeps that much in reserve");
      // The reserve must leave pruning some room, or nothing would ever be pruned.
      reserve = std::min(reserve, 0.5 * targets_.max_drop);
      if (q >= demand_) offer(std::move(q8), q, bytes, true, {}, {});
    }

    std::deque<Model> owned;  // pointer-stable storage for checkpoints
    std::vector<Checkpoint> checkpoints = {
        {&original, result_.baseline_quality, result_.baseline_bytes}};
    const bool retrains = actions_.retrain != nullptr && targets_.prune;
    if (targets_.prune)
      NNC_RETURN_IF_ERROR(
          prunePhase(reserve - (retrains ? targets_.retrain_slack : 0.0), owned, checkpoints));
    if (retrains && actions_.qat && targets_.quantize && targets_.max_bytes > 0) {
      NNC_ASSIGN_OR_RETURN(const bool met, sizeFirstPhase(owned, checkpoints));
      if (met) {
        result_.met_size = true;
        return std::move(result_);
      }
    }
    if (retrains) NNC_RETURN_IF_ERROR(retrainPhase(reserve, owned, checkpoints));
    if (targets_.quantize) NNC_RETURN_IF_ERROR(quantizePhase(checkpoints));
    // Pruned models met the demand too (with the reserve to spare); one may still be the
    // smallest, e.g. when quantization was not asked for or missed the demand everywhere.
    if (checkpoints.size() > 1) {
      const Checkpoint& last = checkpoints.back();
      for (Model& m : owned)
        if (&m == last.model)
          offer(std::move(m), last.quality, last.bytes, false, {}, last.fractions, last.retrained);
    }
    NNC_RETURN_IF_ERROR(learnRoundingOfBest());
    result_.met_size = targets_.max_bytes <= 0 || result_.best_bytes <= targets_.max_bytes;
    return std::move(result_);
  }

 private:
  struct Checkpoint {
    const Model* model;
    double quality;
    int64_t bytes;
    std::vector<double> fractions;  // the prune steps that led here
    bool retrained = false;
  };

  // A pruned model and the prune steps that led to it.
  struct PrunePoint {
    const Model* model;
    std::vector<double> fractions;
  };

  BitPlan lowBitPlan(const Model& m) const {
    BitPlan plan;
    for (const std::string& layer : actions_.quantizable_layers(m)) plan[layer] = targets_.low_bits;
    return plan;
  }

  StatusOr<bool> fitsAtLowBits(const Model& m) {
    NNC_ASSIGN_OR_RETURN(Model q, actions_.quantize(m, lowBitPlan(m)));
    NNC_ASSIGN_OR_RETURN(int64_t bytes, actions_.size(q));
    return bytes <= targets_.max_bytes;
  }

  // `fraction` pruned from `from`, kept at the back of `owned`; whether it fits at low bits, or
  // nullopt when nothing is left to prune.
  StatusOr<std::optional<bool>> pruneAndFit(const Model& from, double fraction,
                                            std::deque<Model>& owned) {
    auto candidate = actions_.prune(from, fraction);
    if (!candidate.isOk()) {
      if (candidate.status().code() == StatusCode::kTargetNotMet) return std::optional<bool>();
      return candidate.status();
    }
    owned.push_back(std::move(candidate).value());
    NNC_ASSIGN_OR_RETURN(const bool fits, fitsAtLowBits(owned.back()));
    return std::optional<bool>(fits);
  }

  // The largest model on the prune path whose layers all at low bits fit the size demand: the
  // first checkpoint that fits, or pruning on past the last one until a step fits; the step
  // into it is then bisected (4 halvings) for the smallest fraction that still fits.
  StatusOr<std::optional<PrunePoint>> largestFitting(std::deque<Model>& owned,
                                                     const std::vector<Checkpoint>& checkpoints) {
    size_t i = 0;
    const Model* fit = nullptr;
    for (; i < checkpoints.size() && !fit; ++i) {
      NNC_ASSIGN_OR_RETURN(const bool fits, fitsAtLowBits(*checkpoints[i].model));
      if (fits) fit = checkpoints[i].model;
    }
    if (fit && i == 1) return std::optional<PrunePoint>(PrunePoint{fit, {}});  // the original fits
    const Checkpoint& start = checkpoints[fit ? i - 2 : i - 1];
    PrunePoint from{start.model, start.fractions};
    double hi = fit ? checkpoints[i - 1].fractions.back() : targets_.step_fraction;
    for (int step = 0; !fit && step < targets_.max_prune_steps; ++step) {
      NNC_ASSIGN_OR_RETURN(const std::optional<bool> fits, pruneAndFit(*from.model, hi, owned));
      if (!fits) return std::optional<PrunePoint>();
      if (*fits) {
        fit = &owned.back();
      } else {
        from.model = &owned.back();
        from.fractions.push_back(hi);
      }
    }
    if (!fit) return std::optional<PrunePoint>();
    double lo = 0;
    for (int k = 0; k < 4; ++k) {
      const double mid = (lo + hi) / 2;
      NNC_ASSIGN_OR_RETURN(const std::optional<bool> fits, pruneAndFit(*from.model, mid, owned));
      if (fits && *fits) {
        fit = &owned.back();
        hi = mid;
      } else {
        if (fits) owned.pop_back();  // too big: not kept
        lo = mid;
      }
    }
    from.fractions.push_back(hi);
    return std::optional<PrunePoint>(PrunePoint{fit, from.fractions});
  }

  // With retraining, quantization-aware training and a size demand (--finetune --qat
  // --target-size): the largest pruned model whose layers all at low bits fit the size demand
  // is retrained, then trained with every layer fake-quantized and quantized so. Pruning more
  // than the size needs would only cost accuracy; when this misses the precision demand the
  // accuracy-first search follows. True when both demands were met.
  StatusOr<bool> sizeFirstPhase(std::deque<Model>& owned,
                                const std::vector<Checkpoint>& checkpoints) {
    NNC_ASSIGN_OR_RETURN(std::optional<PrunePoint> point, largestFitting(owned, checkpoints));
    if (!point) {
      log("size first: no pruned model fits the size demand with every layer at low bits");
      return false;
    }
    const std::string bits = std::to_string(targets_.low_bits);
    NNC_ASSIGN_OR_RETURN(int64_t float_bytes, actions_.size(*point->model));
    log("size first: retraining the largest pruned model that fits at " + bits + " bits (" +
        std::to_string(float_bytes) + " bytes in float, " +
        std::to_string(point->fractions.size()) + " prune steps)");
    NNC_ASSIGN_OR_RETURN(Model retrained, actions_.retrain(*point->model));
    NNC_ASSIGN_OR_RETURN(double rq, actions_.quality(retrained));
    NNC_ASSIGN_OR_RETURN(int64_t rbytes, actions_.size(retrained));
    record("retrain", "distillation of the largest pruned model that fits at " + bits + " bits",
           rbytes, rq, rq >= demand_);
    log("size first: retrained quality " + qualityText(rq) + " (demand " + qualityText(demand_) +
        ")");
    if (rq < demand_) return false;  // training with quantization would not win that back
    const BitPlan plan = lowBitPlan(retrained);
    NNC_ASSIGN_OR_RETURN(Model q, actions_.qat(retrained, plan));
    NNC_ASSIGN_OR_RETURN(double qq, actions_.quality(q));
    NNC_ASSIGN_OR_RETURN(int64_t qbytes, actions_.size(q));
    const bool ok = qq >= demand_ && qbytes <= targets_.max_bytes;
    record("quantize",
           "all " + std::to_string(plan.size()) + " layers at " + bits +
               " bits, quantization-aware trained, on the retrained model",
           qbytes, qq, ok);
    log("size first: quantized quality " + qualityText(qq) + ", " + std::to_string(qbytes) +
        " bytes");
    if (ok) offer(std::move(q), qq, qbytes, true, plan, point->fractions, true, nullptr, true);
    return ok;
  }

  // Retrains the last checkpoint (then earlier ones) until one meets the demand plus the
  // reserve; keeps only the checkpoints that meet it. After a miss, the next try is the latest
  // earlier checkpoint that the gain just measured would lift to the demand (a neighbour of
  // nearly the same quality would miss again).
  Status retrainPhase(double reserve, std::deque<Model>& owned,
                      std::vector<Checkpoint>& checkpoints) {
    const double strict = demand_ + reserve;
    std::vector<Checkpoint> kept;
    for (const Checkpoint& c : checkpoints)
      if (c.quality >= strict) kept.push_back(c);
    int tries = 0;
    size_t i = checkpoints.size() - 1;
    while (i >= 1 && checkpoints[i].quality < strict && tries++ < targets_.max_retrains) {
      const Checkpoint& c = checkpoints[i];
      log("retraining prune checkpoint " + std::to_string(i) + " (quality " +
          qualityText(c.quality) + ")");
      NNC_ASSIGN_OR_RETURN(Model m, actions_.retrain(*c.model));
      NNC_ASSIGN_OR_RETURN(double q, actions_.quality(m));
      NNC_ASSIGN_OR_RETURN(int64_t bytes, actions_.size(m));
      const bool ok = q >= strict;
      record("retrain", "distillation on prune checkpoint " + std::to_string(i), bytes, q, ok);
      log("retrained checkpoint " + std::to_string(i) + ": quality " + qualityText(q));
      if (!ok) {
        const double gain = q - c.quality;
        while (--i >= 1 && checkpoints[i].quality + gain < strict) {
        }
        continue;
      }
      owned.push_back(std::move(m));
      while (!kept.empty() && kept.back().bytes <= bytes) kept.pop_back();
      kept.push_back({&owned.back(), q, bytes, c.fractions, true});
      break;
    }
    checkpoints = std::move(kept);
    return Status::ok();
  }

  Status prunePhase(double reserve, std::deque<Model>& owned,
                    std::vector<Checkpoint>& checkpoints) {
    double fraction = targets_.step_fraction;
    for (int step = 0; step < targets_.max_prune_steps; ++step) {
      auto candidate = actions_.prune(*checkpoints.back().model, fraction);
      if (!candidate.isOk()) {
        if (candidate.status().code() == StatusCode::kTargetNotMet) {
          log("nothing left to prune");
          break;
        }
        return candidate.status();
      }
      NNC_ASSIGN_OR_RETURN(double q, screened(*candidate, demand_ + reserve));
      NNC_ASSIGN_OR_RETURN(int64_t bytes, actions_.size(*candidate));
      const bool ok = q >= demand_ + reserve;
      record("prune", "remove " + percentText(fraction) + " of the remaining channels", bytes, q,
             ok);
      if (ok) {
        log("pruned " + percentText(fraction) + ": quality " + qualityText(q) + ", " +
            std::to_string(bytes) + " bytes");
        owned.push_back(std::move(candidate).value());
        std::vector<double> path = checkpoints.back().fractions;
        path.push_back(fraction);
        checkpoints.push_back({&owned.back(), q, bytes, std::move(path)});
      } else {
        fraction /= 2;
        log("step missed the demand (quality " + qualityText(q) + "); step now " +
            percentText(fraction));
        if (fraction < targets_.min_step_fraction) break;
      }
    }
    return Status::ok();
  }

  Status quantizePhase(const std::vector<Checkpoint>& checkpoints) {
    // At most this many checkpoints get a sensitivity analysis (it costs one evaluation per
    // layer); later checkpoints are smaller, so they are tried first.
    int sensitivity_budget = 3;
    for (size_t i = checkpoints.size(); i-- > 0;) {
      const Model& base = *checkpoints[i].model;
      const std::string where = i == 0 ? "the original" : "prune checkpoint " + std::to_string(i);
      NNC_ASSIGN_OR_RETURN(Model q8, actions_.quantize(base, {}));
      NNC_ASSIGN_OR_RETURN(double q8_quality, screened(q8, demand_));
      NNC_ASSIGN_OR_RETURN(int64_t q8_bytes, actions_.size(q8));
      const bool q8_ok = q8_quality >= demand_;
      record("quantize", "8-bit weights on " + where, q8_bytes, q8_quality, q8_ok);
      if (!q8_ok) {
        log("8-bit " + where + " misses the demand (quality " + qualityText(q8_quality) + ")");
        continue;
      }
      offer(std::move(q8), q8_quality, q8_bytes, true, {}, checkpoints[i].fractions,
            checkpoints[i].retrained);
      if (targets_.max_bytes <= 0 || q8_bytes <= targets_.max_bytes) return Status::ok();
      if (sensitivity_budget-- <= 0) break;
      NNC_ASSIGN_OR_RETURN(Model q8_model, actions_.quantize(base, {}));

      // Sensitivity: quality with one layer alone at low bits.
      const std::vector<std::string> layers = actions_.quantizable_layers(base);
      std::vector<std::pair<double, std::string>> order;
      // A ranking only: the quick measure (when there is one) is enough.
      const auto& rank_quality = actions_.quick_quality ? actions_.quick_quality : actions_.quality;
      NNC_ASSIGN_OR_RETURN(double q8_rank, rank_quality(q8_model));
      for (const std::string& layer : layers) {
        NNC_ASSIGN_OR_RETURN(Model m, actions_.quantize(base, {{layer, targets_.low_bits}}));
        NNC_ASSIGN_OR_RETURN(double q, rank_quality(m));
        order.emplace_back(q8_rank - q, layer);
        result_.sensitivity[layer] = q8_rank - q;
      }
      record("sensitivity",
             std::to_string(layers.size()) + " layers at " + std::to_string(targets_.low_bits) +
                 " bits on " + where,
             q8_bytes, q8_quality, true);
      std::stable_sort(order.begin(), order.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; });
      auto planOf = [&](size_t k) {
        BitPlan plan;
        for (size_t j = 0; j < k; ++j) plan[order[j].second] = targets_.low_bits;
        return plan;
      };
      // Fewest low-bit layers that meet the size demand (size falls as layers are added).
      size_t lo = 1, hi = order.size();
      std::optional<int64_t> hi_bytes;
      while (lo < hi) {
        const size_t mid = (lo + hi) / 2;
        NNC_ASSIGN_OR_RETURN(Model m, actions_.quantize(base, planOf(mid)));
        NNC_ASSIGN_OR_RETURN(int64_t bytes, actions_.size(m));
        if (bytes <= targets_.max_bytes)
          hi = mid;
        else
          lo = mid + 1;
      }
      // Rounds: from the fewest layers that fit, and if that misses the precision demand the
      // result stays the best smaller-than-8-bit model found so far.
      const size_t k = hi;
      BitPlan plan = planOf(k);
      NNC_ASSIGN_OR_RETURN(Model m, quantizeTrained(base, plan, where));
      NNC_ASSIGN_OR_RETURN(double q, screened(m, demand_));
      NNC_ASSIGN_OR_RETURN(int64_t bytes, actions_.size(m));
      const bool ok = q >= demand_;
      record("quantize",
             std::to_string(k) + " least sensitive layers at " + std::to_string(targets_.low_bits) +
                 " bits on " + where,
             bytes, q, ok && bytes <= targets_.max_bytes);
      if (ok) {
        offer(std::move(m), q, bytes, true, plan, checkpoints[i].fractions,
              checkpoints[i].retrained, actions_.qat ? nullptr : &base, actions_.qat != nullptr);
        if (bytes <= targets_.max_bytes) return Status::ok();
      } else {
        // Too many layers at low bits for the precision demand: the most layers that still
        // hold it (quality falls as layers are added) give the smallest model that does.
        size_t good = 0, bad = k;
        while (bad - good > 1) {
          const size_t mid = (good + bad) / 2;
          BitPlan partial = planOf(mid);
          NNC_ASSIGN_OR_RETURN(Model pm, actions_.quantize(base, partial));
          NNC_ASSIGN_OR_RETURN(double pq, screened(pm, demand_));
          NNC_ASSIGN_OR_RETURN(int64_t pbytes, actions_.size(pm));
          record("quantize",
                 std::to_string(mid) + " least sensitive layers at " +
                     std::to_string(targets_.low_bits) + " bits on " + where,
                 pbytes, pq, false);
          if (pq >= demand_) {
            good = mid;
            offer(std::move(pm), pq, pbytes, true, partial, checkpoints[i].fractions,
                  checkpoints[i].retrained, &base);
          } else {
            bad = mid;
          }
        }
      }
    }
    return Status::ok();
  }

  // quantize(base, plan), or with a qat action the plan quantized from a fake-quant retrained copy.
  StatusOr<Model> quantizeTrained(const Model& base, const BitPlan& plan,
                                  const std::string& where) {
    if (!actions_.qat || plan.empty()) return actions_.quantize(base, plan);
    log("quantization-aware training of " + where + " with " + std::to_string(plan.size()) +
        " layers at " + std::to_string(targets_.low_bits) + " bits");
    return actions_.qat(base, plan);
  }

  // Quality of a candidate that must reach `threshold`. With a quick measure (a subset of the
  // data), clear failures are rejected from it: its drop from the original, measured on the same
  // subset, exceeds the allowed drop by more than the margin. Everything else gets the full
  // measure, so accepted candidates are always judged on all the data.
  StatusOr<double> screened(const Model& model, double threshold) {
    if (actions_.quick_quality) {
      if (!quick_baseline_) {
        NNC_ASSIGN_OR_RETURN(double b, actions_.quick_quality(*original_));
        quick_baseline_ = b;
      }
      NNC_ASSIGN_OR_RETURN(double quick, actions_.quick_quality(model));
      const double quick_drop = *quick_baseline_ - quick;
      const double allowed = result_.baseline_quality - threshold;
      if (quick_drop > allowed + actions_.quick_margin) {
        ++result_.quick_rejections;
        return result_.baseline_quality - quick_drop;
      }
    }
    return actions_.quality(model);
  }

  // A candidate that met the precision demand: keep it if it is the smallest so far.
  // AdaRound on the chosen low-bit configuration (once: per candidate it would cost a fit per
  // trial); kept when it meets the precision demand. Its fit lowers each layer's output error on
  // the calibration data (a layer keeps balanced rounding otherwise), so a few evaluation samples
  // that move either way are not a reason to drop it.
  Status learnRoundingOfBest() {
    if (!actions_.learned_rounding || !best_base_ || result_.best_bits.empty()) return Status::ok();
    NNC_ASSIGN_OR_RETURN(auto learned, actions_.learned_rounding(*best_base_, result_.best_bits));
    auto& [model, layers] = learned;
    NNC_ASSIGN_OR_RETURN(double q, actions_.quality(model));
    NNC_ASSIGN_OR_RETURN(int64_t bytes, actions_.size(model));
    const bool meets = layers > 0 && q >= demand_;
    record("quantize",
           "AdaRound rounding of " + std::to_string(layers) + " layers at " +
               std::to_string(targets_.low_bits) + " bits",
           bytes, q, meets);
    if (!meets) {
      log("AdaRound (quality " + qualityText(q) + ") kept out: it misses the demand");
      return Status::ok();
    }
    result_.best = std::move(model);
    result_.best_quality = q;
    result_.best_bytes = bytes;
    result_.adaround_layers = layers;
    return Status::ok();
  }

  void offer(Model&& model, double quality, int64_t bytes, bool quantized, BitPlan bits,
             std::vector<double> prune_fractions, bool retrained = false,
             const Model* base = nullptr, bool qat = false) {
    if (result_.best && bytes >= result_.best_bytes) return;
    if (!result_.best && bytes >= result_.baseline_bytes) return;
    best_base_ = base;  // the float model `model` was quantized from (low-bit plans only)
    result_.best_qat = qat;
    result_.best = std::move(model);
    result_.best_quality = quality;
    result_.best_bytes = bytes;
    result_.best_quantized = quantized;
    result_.best_bits = std::move(bits);
    result_.best_prune_fractions = std::move(prune_fractions);
    result_.best_retrained = retrained;
  }

  void record(const std::string& kind, const std::string& description, int64_t bytes,
              double quality, bool accepted) {
    result_.steps.push_back({kind, description, bytes, quality, accepted});
  }
  void log(const std::string& line) {
    if (actions_.log) actions_.log(line);
  }

  const CompressTargets& targets_;
  const CompressActions& actions_;
  CompressResult result_;
  double demand_ = 0;
  const Model* original_ = nullptr;
  std::optional<double> quick_baseline_;
  const Model* best_base_ = nullptr;
};

}  // namespace

StatusOr<CompressResult> compressModel(const Model& original, const CompressTargets& targets,
                                       const CompressActions& actions) {
  if (!actions.quality || !actions.size || (targets.prune && !actions.prune) ||
      (targets.quantize && (!actions.quantize || !actions.quantizable_layers)))
    return invalidArgument("compressModel: an action the targets need is missing");
  if (!(targets.step_fraction > 0 && targets.step_fraction < 1))
    return invalidArgument("compressModel: step_fraction must be in (0, 1)");
  Controller controller(targets, actions);
  return controller.run(original);
}

}  // namespace nnc
