#pragma once
// Running a model over a dataset: accuracy against labels and fidelity against a reference
// model, streamed batch by batch (memory does not grow with the dataset).

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "nncompress/data/dataset.h"
#include "nncompress/exec/executor.h"

namespace nnc {

struct EvalOptions {
  // How each output holds class scores for top-1 and agreement.
  enum class Classes {
    kWholeSample,  // each sample's whole output is one row of scores (a classifier's [N, K])
    kLastAxis,     // each position along the last axis is a row ([N, T, K] per-step classes):
                   // agreement is the share of rows that agree, averaged over samples
  };
  std::vector<Classes> classes;  // per graph output; kWholeSample where missing
  // Refuse a model none of whose outputs holds class scores (at least 2 per row; kWholeSample
  // needs [N, K] or [N, K, 1, ...]): its top-1 agreement would say nothing (a regression's
  // [N, 1] always agrees).
  bool require_classes = false;
  int64_t limit = -1;  // samples to use; -1: all
  int64_t batch = 32;
  // Called after each batch with (samples done, total).
  std::function<void(int64_t, int64_t)> progress;
  // When set, receives the wall time in seconds of each executor run on a full batch (no data
  // reading), e.g. for a median that load from other processes barely moves.
  std::vector<double>* run_seconds = nullptr;
  // Past a NonMaxSuppression, hand over the boxes and scores it selects from instead of the
  // outputs (analysis/fidelity_taps.h): evaluate() compares those; `run` writes the outputs.
  bool selection_inputs = false;
  // With selection_inputs: take this graph's taps where the model computes them all (evaluate:
  // the reference's, so both models hand over the same values).
  const Graph* taps_from = nullptr;
};

struct EvalResult {
  int64_t count = 0;
  std::optional<double> top1, top5;  // with labels
  double images_per_second = 0;  // samples / seconds spent reading batches and running the model
  // Median wall time of one executor run on a full batch (ms), the statistic ONNX Runtime's
  // tools/ort/bench.js reports; 0 when no batch was full.
  double batch_ms_median = 0;
  // With a reference model: top-1 agreement (per sample, the share of rows that agree, averaged
  // over every output holding class scores, then over samples; absent when none does), mean
  // per-sample cosine similarity of the first outputs, and their signal-to-quantization-noise
  // ratio in dB.
  std::optional<double> agreement, cosine, sqnr_db;
  // With a reference model: 1 - the relative squared error of every output (||y - ref||^2 /
  // ||ref||^2 over all samples, averaged over the outputs): the quality of models without class
  // scores (0.99: 1% error, an SQNR of 20 dB).
  std::optional<double> fidelity;
  bool class_scores = false;  // some output holds class scores (EvalOptions::Classes)
};

// Per graph output: kLastAxis when a Softmax or LogSoftmax over its last axis makes it (class
// probabilities at every position, such as a recogniser's per-step characters), else kWholeSample.
std::vector<EvalOptions::Classes> classesOf(const Model& model);

// The batch size to use with this model and data: `requested`, unless the model's input fixes
// the batch dimension (e.g. 1), which then wins, or has none (reader.maxBatch() 1).
int64_t effectiveBatch(const exec::Executor& executor, const data::SampleReader& reader,
                       int64_t requested);

// Checks that samples of `reader` fit the model's single float input (apart from the batch).
Status checkDataFitsModel(const exec::Executor& executor, const data::SampleReader& reader);

StatusOr<EvalResult> evaluate(exec::Executor& model, data::SampleReader& reader,
                              const std::vector<int64_t>* labels, exec::Executor* reference,
                              const EvalOptions& options);

// Runs the model and hands every batch's outputs to `sink` (batch index, first sample, outputs).
Status runBatches(exec::Executor& model, data::SampleReader& reader, const EvalOptions& options,
                  const std::function<Status(int64_t, int64_t, std::vector<Tensor>&)>& sink);

}  // namespace nnc
