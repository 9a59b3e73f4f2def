#pragma once
// Calibration batches run through a model or through the part of it that computes some values
// (recovery.cc). StagedPasses runs a sequence of such passes (one per level of least-squares
// refits, the model's weights changing between them) so that every node runs once per batch over
// all stages: a stage starts from the activations earlier stages computed, kept per batch, instead
// of from the model input.

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "nncompress/exec/executor.h"
#include "nncompress/prune/recovery.h"

namespace nnc::calib {

Status checkCalibration(const CalibrationSource& c);
int threadsOf(const CalibrationSource& c);

// Calls fn(first sample, feeds) for the calibration batches, in order: one tensor per model input.
Status forEachBatch(const CalibrationSource& c,
                    const std::function<Status(int64_t, const std::vector<Tensor>&)>& fn);

// A copy of `model` whose graph outputs are `outputs` (value names) and that computes nothing
// else: a calibration pass stops at the layers it measures.
StatusOr<Model> truncatedCopy(const Model& model, const std::vector<std::string>& outputs);
// The same in place.
Status truncateTo(Graph& graph, const std::vector<std::string>& outputs);

// Distinct names in first-seen order; slot[i] is request i's index among them.
std::vector<std::string> distinct(const std::vector<std::string>& requests,
                                  std::vector<size_t>& slot);

// A truncated model and its executor; several requests may name the same value.
struct Runner {
  std::unique_ptr<Model> model;  // stable address: the executor points into it
  std::unique_ptr<exec::Executor> executor;
  std::vector<std::string> outputs;  // distinct
  std::vector<size_t> slot;          // per request: index into outputs

  static StatusOr<Runner> make(const Model& from, const std::vector<std::string>& requests,
                               int threads);
  // One tensor per distinct output (index with `slot`); graph output slots beyond those are
  // repeats of the last one and are ignored.
  StatusOr<std::vector<Tensor>> run(const std::vector<Tensor>& feeds);
};

// Stage k computes the values named in stages[k] on every calibration batch. Precondition (what
// level-ordered refits guarantee): between stages only the weights of nodes that no earlier
// stage's values depend on change, so activations computed for an earlier stage stay valid.
// Activations a later stage needs are kept per batch when all of them fit in `cache_bytes` (their
// shapes known up front); otherwise every stage runs from the model input.
class StagedPasses {
 public:
  StagedPasses(const Model& model, std::vector<std::vector<std::string>> stages,
               const CalibrationSource& calibration, int64_t cache_bytes);

  bool caching() const { return caching_; }

  // Runs stage k (stages in order) on `model` (the planned model, weights possibly changed):
  // fn(first sample, values) with values[i] the value stages[k][i] of the batch.
  Status run(size_t k, const Model& model,
             const std::function<Status(int64_t, const std::vector<const Tensor*>&)>& fn);

 private:
  struct Stage {
    std::vector<std::string> cut;    // values read from the cache (fed as inputs)
    std::vector<std::string> store;  // values computed here and kept for later stages
    std::vector<std::string> drop;   // cached values no later stage reads
  };
  StatusOr<Runner> segment(size_t k, const Model& model) const;

  std::vector<std::vector<std::string>> requests_;
  std::vector<Stage> plan_;
  CalibrationSource calibration_;
  bool caching_ = false;
  std::vector<std::unordered_map<std::string, Tensor>> cache_;  // per batch
};

}  // namespace nnc::calib
