#pragma once
// Fine-tuning by distillation (METHODS.md section 6): the student (a pruned or otherwise
// simplified model) learns to reproduce the teacher's (the original's) outputs on unlabelled
// data, plus a cross-entropy term when labels exist. A model whose every output is a final
// Softmax over the last axis trains and is compared on the logits before it
// (train/softmax_heads.h); the model written back keeps its Softmax.
//
//   for epoch e: samples in a seeded random order (seed, e), read batch by batch (memory does
//                not grow with the dataset); per batch: teacher forward (executor), student
//                forward + backward (train::GradientTape), loss (train::distillationLoss),
//                optimiser step at the cosine-with-warm-up learning rate
//   after each epoch: metric on the validation data (top-1 with labels, else the distillation
//                loss against the teacher); the best epoch's weights are kept
//   at the end: the best weights written into the model, BatchNorm statistics re-estimated on
//                the training data, kept only when they do not make the model worse (top-1 on
//                labelled validation data, else the distillation loss on the validation data or
//                the re-estimation samples): training keeps the statistics frozen, so the
//                weights fit them, and fresh statistics can make the model worse
//
// Checkpoints (optional) hold the weights, the optimiser state and the position in the data; a
// run resumed from one ends with the same weights as an uninterrupted run (same seed, same
// thread count).

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nncompress/data/dataset.h"
#include "nncompress/ir/graph.h"
#include "nncompress/train/augment.h"
#include "nncompress/train/distill_loss.h"
#include "nncompress/train/optimizer.h"
#include "nncompress/train/tape.h"

namespace nnc {

struct FinetuneProgress {
  int epoch = 0, epochs = 0;          // epoch is 1-based
  int64_t step = 0, total_steps = 0;  // over the whole run
  double loss = 0;                    // mean over the epoch so far
  double learning_rate = 0;
  double images_per_second = 0;  // this session (resumed runs: since the resume)
  double eta_seconds = 0;
};

struct FinetuneEpoch {
  int epoch = 0;
  double train_loss = 0;
  std::optional<double> val_top1, val_loss;  // whichever the validation data gives
  double seconds = 0;
};

struct FinetuneOptions {
  int epochs = 1;
  int64_t batch = 64;
  // Samples per forward/backward pass (0: the whole batch): a step of `batch` samples sums the
  // gradients of several passes, the same step for the KL and cross-entropy (batch means).
  // finetune() lowers it to a batch the models fix (many exports hard-code batch 1).
  int64_t pass_batch = 0;
  double learning_rate = 1e-3;
  double warmup_fraction = 0.03;  // of all steps
  train::OptimizerOptions optimizer;
  train::DistillLossOptions loss;
  uint64_t seed = 0;
  // Label-free augmentation: the same altered batch goes to the teacher and the student.
  train::AugmentOptions augment;
  // Exponential moving average of the weights (Polyak averaging), 0: none. With it, validation,
  // the best epoch and the result use the averaged weights. The decay warms up as
  // min(decay, (1 + t) / (10 + t)) over the optimiser steps t.
  double ema_decay = 0;
  // Without labels: cross-entropy on the teacher's arg-max class (its hard label) with this
  // weight beside the KL term (classifiers only). 0: none.
  double teacher_label_weight = 0;
  int num_threads = 0;  // 0: every core
  // Conv gradients with bf16 products where the CPU has AVX-512 BF16
  // (train::TapeOptions::bf16_conv_grads); false: float32 throughout.
  bool bf16_conv_grads = true;
  const std::vector<int64_t>* labels = nullptr;  // per sample of the training data
  data::SampleReader* val = nullptr;             // best epoch chosen on it (else the last)
  const std::vector<int64_t>* val_labels = nullptr;
  int64_t val_limit = -1;  // validation samples to use; -1: all
  bool reestimate_batch_norm = true;
  int64_t batch_norm_samples = 2048;  // training samples for the re-estimation
  // Checkpoint directory ("" = none): resumed from when it holds a checkpoint of this run,
  // written every checkpoint_every steps and at the end of each epoch.
  std::string checkpoint_dir;
  int64_t checkpoint_every = 200;
  // Stop after this many steps of the run (a test aid that simulates an interrupted job; the
  // checkpoint is written first). -1: run to the end.
  int64_t stop_after_steps = -1;
  // Fake quantization (QAT) by value name, installed on the student's tape.
  std::map<std::string, train::FakeQuantFn> fake_quant;
  std::function<void(const FinetuneProgress&)> progress;
  std::function<void(const std::string&)> log;
};

struct FinetuneResult {
  std::vector<FinetuneEpoch> epochs;  // those run in this session
  int best_epoch = 0;  // 0: no validation (the last epoch's weights), or no epoch beat the start
  // The starting weights on --val (a fresh run with validation data).
  std::optional<double> val_top1_start, val_loss_start;
  bool resumed = false;
  bool stopped_early = false;  // stop_after_steps reached
  bool batch_norm_reestimated = false;
  std::optional<double> val_top1_before_bn, val_top1_after_bn;
  std::optional<double> loss_before_bn, loss_after_bn;  // when judged by the distillation loss
  double images_per_second = 0;
  int64_t steps = 0;
  bool bf16_conv_grads = false;  // asked for and available on this CPU
  std::string loss;              // "kl" or "mse": the loss the steps used ("" if none ran)
  // Outputs distilled on the logits before their final Softmax (train/softmax_heads.h), 0: none.
  int softmax_logits = 0;
};

// Whether `model` can be fine-tuned at all: one float input, and a backward for every op between
// a trainable weight and an output (kUnsupported naming what is missing). Cheap next to training:
// commands that fine-tune after other work (prune --finetune) check it first.
Status checkTrainable(const Model& model);

// Trains `student` in place. `teacher` must accept the same input and produce outputs of the
// same shapes. kInvalidArgument for bad options or data that does not fit.
StatusOr<FinetuneResult> finetune(Model& student, const Model& teacher, data::SampleReader& data,
                                  const FinetuneOptions& options);

}  // namespace nnc
