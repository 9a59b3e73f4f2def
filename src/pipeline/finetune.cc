#include "nncompress/pipeline/finetune.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "finetune_checkpoint.h"
#include "nncompress/exec/executor.h"
#include "nncompress/ir/option_error.h"
#include "nncompress/prune/recovery.h"
#include "nncompress/train/lr_schedule.h"
#include "nncompress/train/softmax_heads.h"

namespace nnc {
namespace {

using Clock = std::chrono::steady_clock;
double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The sample order of an epoch: a permutation drawn from (seed, epoch) alone, so a resumed run
// sees the same order.
std::vector<int64_t> epochOrder(int64_t samples, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(samples);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch) + 1);
  std::shuffle(order.begin(), order.end(), rng);
  return order;
}

// Samples order[begin, begin + count) as one batch (read one by one: memory is one batch),
// augmented with draws keyed by (epoch, sample).
StatusOr<Tensor> readSamples(data::SampleReader& reader, const std::vector<int64_t>& order,
                             int64_t begin, int64_t count, int64_t epoch,
                             const FinetuneOptions& o) {
  std::string bytes;
  Shape shape;
  DType dtype = DType::kFloat32;
  for (int64_t i = 0; i < count; ++i) {
    NNC_ASSIGN_OR_RETURN(Tensor one, reader.readBatch(order[begin + i], 1));
    if (i == 0) shape = one.shape(), dtype = one.dtype();
    if (one.shape() != shape || one.dtype() != dtype)
      return internalError("a sample of the data changed shape or type");
    bytes += one.bytes();
  }
  if (shape.empty()) return internalError("a sample of the data has no batch axis");
  shape[0] = count;
  NNC_ASSIGN_OR_RETURN(Tensor batch, Tensor::fromBytes(dtype, shape, std::move(bytes)));
  if (o.augment.active()) {
    std::vector<uint64_t> keys(count);
    for (int64_t i = 0; i < count; ++i)
      keys[i] = (static_cast<uint64_t>(epoch) << 40) ^ static_cast<uint64_t>(order[begin + i]);
    train::augmentImages(batch, o.augment, o.seed, keys);
  }
  return batch;
}

// Samples per forward pass: the batch, or FinetuneOptions::pass_batch when smaller.
int64_t passBatch(const FinetuneOptions& o) {
  return o.pass_batch > 0 ? std::min(o.pass_batch, o.batch) : o.batch;
}

// Rows [at, at + count) of a batch.
Tensor batchRows(const Tensor& batch, int64_t at, int64_t count) {
  Shape shape = batch.shape();
  const size_t per = batch.byteSize() / shape[0];
  shape[0] = count;
  Tensor rows(batch.dtype(), shape);
  std::memcpy(rows.mutableBytes().data(), batch.bytes().data() + at * per, count * per);
  return rows;
}

int64_t argmaxRow(std::span<const float> row) {
  return std::max_element(row.begin(), row.end()) - row.begin();
}

// Validation metric: top-1 with labels (higher is better), else the distillation loss against
// the teacher (lower is better). Returned as "higher is better" in `score`.
struct ValResult {
  std::optional<double> top1, loss;
  double score = 0;
};

StatusOr<ValResult> validate(train::GradientTape& tape, exec::Executor& teacher,
                             const FinetuneOptions& o) {
  data::SampleReader& val = *o.val;
  const int64_t total = o.val_limit < 0 ? val.size() : std::min(o.val_limit, val.size());
  int64_t correct = 0;
  double loss_sum = 0;
  for (int64_t start = 0; start < total; start += passBatch(o)) {
    const int64_t n = std::min(passBatch(o), total - start);
    NNC_ASSIGN_OR_RETURN(Tensor x, val.readBatch(start, n));
    NNC_ASSIGN_OR_RETURN(std::vector<Tensor> s, tape.infer({x}));
    if (o.val_labels) {
      const int64_t k = s[0].numel() / n;
      for (int64_t i = 0; i < n; ++i)
        correct += argmaxRow(s[0].data<float>().subspan(i * k, k)) == (*o.val_labels)[start + i];
    } else {
      NNC_ASSIGN_OR_RETURN(std::vector<Tensor> t, teacher.run({x}));
      NNC_ASSIGN_OR_RETURN(train::LossResult l, train::distillationLoss(s, t, nullptr, o.loss));
      loss_sum += l.loss * n;
    }
  }
  ValResult r;
  if (o.val_labels) {
    r.top1 = total ? double(correct) / total : 0.0;
    r.score = *r.top1;
  } else {
    r.loss = total ? loss_sum / total : 0.0;
    r.score = -*r.loss;
  }
  return r;
}

// Top-1 of a model (after training, to decide on the BatchNorm re-estimation).
StatusOr<double> modelTop1(const Model& model, const FinetuneOptions& o) {
  exec::ExecutorOptions eo;
  eo.num_threads = o.num_threads;
  NNC_ASSIGN_OR_RETURN(auto ex, exec::Executor::create(model, eo));
  const int64_t total = o.val_limit < 0 ? o.val->size() : std::min(o.val_limit, o.val->size());
  int64_t correct = 0;
  for (int64_t start = 0; start < total; start += passBatch(o)) {
    const int64_t n = std::min(passBatch(o), total - start);
    NNC_ASSIGN_OR_RETURN(Tensor x, o.val->readBatch(start, n));
    NNC_ASSIGN_OR_RETURN(std::vector<Tensor> y, ex->run({x}));
    const int64_t k = y[0].numel() / n;
    for (int64_t i = 0; i < n; ++i)
      correct += argmaxRow(y[0].data<float>().subspan(i * k, k)) == (*o.val_labels)[start + i];
  }
  return total ? double(correct) / total : 0.0;
}

Status checkOptions(const FinetuneOptions& o, const data::SampleReader& data) {
  if (o.epochs < 1) return invalidOption("epochs", "fine-tuning needs at least 1 epoch");
  if (o.batch < 1) return invalidOption("batch", "the batch size must be at least 1");
  if (!(o.ema_decay >= 0 && o.ema_decay < 1))
    return invalidOption("ema_decay", "the weight-average decay must be in [0, 1)");
  if (o.augment.max_shift < 0) return invalidOption("augment", "the shift must not be negative");
  if (!(o.learning_rate > 0))
    return invalidOption("learning_rate", "the learning rate must be positive");
  if (o.loss.kind == train::LossKind::kNormalisedMse &&
      ((o.labels && o.loss.label_weight > 0) || o.teacher_label_weight > 0))
    return invalidOption("loss",
                         "a cross-entropy on labels needs the KL loss, not mse (labels, from "
                         "--labels or class folders, are ignored with --label-weight 0)");
  if (data.size() < 1) return invalidArgument("the training data is empty");
  if (o.labels && static_cast<int64_t>(o.labels->size()) != data.size())
    return invalidArgument(std::to_string(o.labels->size()) + " labels for " +
                           std::to_string(data.size()) + " training samples");
  if (o.val && o.val_labels && static_cast<int64_t>(o.val_labels->size()) < o.val->size() &&
      (o.val_limit < 0 || static_cast<int64_t>(o.val_labels->size()) < o.val_limit))
    return invalidArgument("fewer validation labels than validation samples");
  return Status::ok();
}

// One fine-tuning run: the state that a checkpoint saves, and the steps.
class FinetuneRun {
 public:
  FinetuneRun(const FinetuneOptions& o, data::SampleReader& data, train::GradientTape& tape,
              exec::Executor& teacher)
      : o_(o), data_(data), tape_(tape), teacher_(teacher) {}

  Status setUp() {
    train::OptimizerOptions oo = o_.optimizer;
    std::vector<Tensor*> params;
    for (train::Parameter& p : tape_.parameters()) params.push_back(&p.value);
    optimizer_ = std::make_unique<train::Optimizer>(std::move(params), oo);
    if (o_.ema_decay > 0)
      for (train::Parameter& p : tape_.parameters()) ema_.push_back(p.value);
    steps_per_epoch_ = (data_.size() + o_.batch - 1) / o_.batch;
    schedule_.peak_lr = o_.learning_rate;
    schedule_.total_steps = steps_per_epoch_ * o_.epochs;
    schedule_.warmup_steps =
        static_cast<int64_t>(std::llround(o_.warmup_fraction * schedule_.total_steps));
    for (const auto& [name, fn] : o_.fake_quant) NNC_RETURN_IF_ERROR(tape_.setFakeQuant(name, fn));
    if (!o_.checkpoint_dir.empty()) NNC_RETURN_IF_ERROR(resume());
    return Status::ok();
  }

  Status run(FinetuneResult& result) {
    result.resumed = resumed_;
    if (o_.val && !resumed_ && global_step_ == 0) NNC_RETURN_IF_ERROR(judgeStart(result));
    const auto start = Clock::now();
    int64_t session_images = 0;
    for (; epoch_ < o_.epochs; ++epoch_, step_in_epoch_ = 0, loss_sum_ = 0) {
      const auto epoch_start = Clock::now();
      const std::vector<int64_t> order = epochOrder(data_.size(), o_.seed, epoch_);
      for (; step_in_epoch_ < steps_per_epoch_; ++step_in_epoch_) {
        if (o_.stop_after_steps >= 0 && global_step_ >= o_.stop_after_steps) {
          result.stopped_early = true;
          NNC_RETURN_IF_ERROR(checkpoint());
          return Status::ok();
        }
        const int64_t begin = step_in_epoch_ * o_.batch;
        const int64_t n = std::min(o_.batch, data_.size() - begin);
        NNC_RETURN_IF_ERROR(trainStep(order, begin, n));
        session_images += n;
        ++global_step_;
        report(session_images, secondsSince(start));
        if (!o_.checkpoint_dir.empty() && o_.checkpoint_every > 0 &&
            global_step_ % o_.checkpoint_every == 0)
          NNC_RETURN_IF_ERROR(checkpoint());
      }
      NNC_RETURN_IF_ERROR(endEpoch(result, secondsSince(epoch_start)));
    }
    result.images_per_second = session_images / std::max(1e-9, secondsSince(start));
    result.steps = global_step_;
    result.loss = loss_name_;
    result.best_epoch = static_cast<int>(best_epoch_);
    auto& params = tape_.parameters();
    if (!best_params_.empty()) {
      for (size_t i = 0; i < params.size(); ++i) params[i].value = best_params_[i];
      if (best_epoch_ == 0 && o_.log)
        o_.log("no epoch beat the starting weights on the validation data: they are kept");
    } else if (!ema_.empty()) {
      for (size_t i = 0; i < params.size(); ++i) params[i].value = ema_[i];
    }
    return Status::ok();
  }

 private:
  // The starting weights compete with the epochs on --val: fine-tuning never returns a model the
  // validation data says is worse than the one it was given (best_epoch 0).
  Status judgeStart(FinetuneResult& result) {
    NNC_ASSIGN_OR_RETURN(const ValResult v, validate(tape_, teacher_, o_));
    result.val_top1_start = v.top1;
    result.val_loss_start = v.loss;
    best_metric_ = v.score;
    best_params_.clear();
    for (const train::Parameter& p : tape_.parameters()) best_params_.push_back(p.value);
    if (o_.log)
      o_.log(v.top1 ? "before fine-tuning: val top-1 " + std::to_string(*v.top1)
                    : "before fine-tuning: val loss " + std::to_string(v.loss.value_or(0)));
    return Status::ok();
  }

  // One optimizer step on samples order[begin, begin + n), in passes of passBatch(o_) samples
  // whose gradients add up (each pass's loss weighted by its share of the batch).
  Status trainStep(const std::vector<int64_t>& order, int64_t begin, int64_t n) {
    NNC_ASSIGN_OR_RETURN(Tensor x, readSamples(data_, order, begin, n, epoch_, o_));
    tape_.zeroGrad();
    double loss = 0;
    const int64_t pass = passBatch(o_);
    for (int64_t at = 0; at < n; at += pass) {
      const int64_t m = std::min(pass, n - at);
      NNC_ASSIGN_OR_RETURN(double part, addGradients(m == n ? std::move(x) : batchRows(x, at, m),
                                                     order, begin + at, double(m) / n));
      loss += part;
    }
    std::vector<const Tensor*> grads;
    for (train::Parameter& p : tape_.parameters()) grads.push_back(&p.grad);
    lr_ = schedule_.at(global_step_);
    NNC_ASSIGN_OR_RETURN(double norm, optimizer_->step(grads, lr_));
    (void)norm;
    updateAverage();
    loss_sum_ += loss;
    return Status::ok();
  }

  // Adds `weight` times the gradients of the distillation loss on `x` (samples order[begin, ...))
  // to the parameters' gradients; returns `weight` times the loss.
  StatusOr<double> addGradients(Tensor x, const std::vector<int64_t>& order, int64_t begin,
                                double weight) {
    const int64_t n = x.dim(0);
    NNC_ASSIGN_OR_RETURN(std::vector<Tensor> teacher_out, teacher_.run({x}));
    std::vector<int64_t> labels;
    train::DistillLossOptions lo = o_.loss;
    if (o_.labels && lo.label_weight > 0) {
      for (int64_t i = 0; i < n; ++i) labels.push_back((*o_.labels)[order[begin + i]]);
    } else if (o_.teacher_label_weight > 0 && train::isClassifierOutput(teacher_out)) {
      const int64_t k = teacher_out[0].dim(1);
      for (int64_t i = 0; i < n; ++i)
        labels.push_back(argmaxRow(teacher_out[0].data<float>().subspan(i * k, k)));
      lo.label_weight = o_.teacher_label_weight;
    }
    const train::LossKind kind = train::resolveLossKind(lo.kind, teacher_out, lo.softmax_logits);
    if (loss_name_.empty()) logLoss(kind);
    loss_name_ = train::lossKindName(kind);
    NNC_ASSIGN_OR_RETURN(std::vector<Tensor> student_out, tape_.forward({std::move(x)}));
    NNC_ASSIGN_OR_RETURN(
        train::LossResult loss,
        train::distillationLoss(student_out, teacher_out, labels.empty() ? nullptr : &labels, lo));
    if (!std::isfinite(loss.loss))
      return invalidOption("learning_rate", "the loss is not finite at step " +
                                                std::to_string(global_step_) +
                                                ": lower the learning rate");
    if (weight != 1)
      for (Tensor& g : loss.gradients)
        for (float& v : g.mutableData<float>()) v = static_cast<float>(v * weight);
    NNC_RETURN_IF_ERROR(tape_.backward(std::move(loss.gradients)));
    return weight * loss.loss;
  }

  // Which loss the steps use and, when auto guessed it from the shape alone, what it took the
  // output for.
  void logLoss(train::LossKind kind) const {
    if (!o_.log) return;
    std::string line = std::string("loss ") + train::lossKindName(kind);
    if (o_.loss.softmax_logits)
      line += " on the logits before the final Softmax";
    else if (o_.loss.kind == train::LossKind::kAuto && kind == train::LossKind::kKlDivergence)
      line +=
          ": the one [N, K] output read as class logits (--loss mse if it is a regression: "
          "coordinates, scores)";
    o_.log(line);
  }

  // ema <- d ema + (1 - d) w, the decay warming up so early weights fade quickly.
  void updateAverage() {
    if (ema_.empty()) return;
    const double t = static_cast<double>(optimizer_->steps());
    const float d = static_cast<float>(std::min(o_.ema_decay, (1 + t) / (10 + t)));
    auto& params = tape_.parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      auto avg = ema_[i].mutableData<float>();
      const auto w = params[i].value.data<float>();
      for (size_t j = 0; j < avg.size(); ++j) avg[j] = d * avg[j] + (1 - d) * w[j];
    }
  }

  // Exchanges the trained and the averaged weights (no-op without averaging).
  void swapAverage() {
    auto& params = tape_.parameters();
    for (size_t i = 0; i < ema_.size(); ++i) std::swap(params[i].value, ema_[i]);
  }

  void report(int64_t images, double seconds) {
    if (!o_.progress) return;
    FinetuneProgress p;
    p.epoch = static_cast<int>(epoch_ + 1);
    p.epochs = o_.epochs;
    p.step = global_step_;
    p.total_steps = schedule_.total_steps;
    p.loss = loss_sum_ / std::max<int64_t>(1, step_in_epoch_ + 1);
    p.learning_rate = lr_;
    p.images_per_second = images / std::max(1e-9, seconds);
    const int64_t left = (schedule_.total_steps - global_step_) * o_.batch;
    p.eta_seconds = p.images_per_second > 0 ? left / p.images_per_second : 0;
    o_.progress(p);
  }

  Status endEpoch(FinetuneResult& result, double seconds) {
    FinetuneEpoch e;
    e.epoch = static_cast<int>(epoch_ + 1);
    e.train_loss = loss_sum_ / std::max<int64_t>(1, steps_per_epoch_);
    e.seconds = seconds;
    if (o_.val) {
      swapAverage();  // judge (and keep) the averaged weights
      auto v = validate(tape_, teacher_, o_);
      if (v.isOk() && (best_params_.empty() || v->score > best_metric_)) {
        best_epoch_ = e.epoch;
        best_metric_ = v->score;
        best_params_.clear();
        for (const train::Parameter& p : tape_.parameters()) best_params_.push_back(p.value);
      }
      swapAverage();
      if (!v.isOk()) return v.status();
      e.val_top1 = v->top1;
      e.val_loss = v->loss;
    }
    if (o_.log) {
      std::string line = "epoch " + std::to_string(e.epoch) + "/" + std::to_string(o_.epochs) +
                         ": loss " + std::to_string(e.train_loss);
      if (e.val_top1) line += ", val top-1 " + std::to_string(*e.val_top1);
      if (e.val_loss) line += ", val loss " + std::to_string(*e.val_loss);
      o_.log(line + ", " + std::to_string(static_cast<int64_t>(seconds)) + " s");
    }
    result.epochs.push_back(e);
    if (!o_.checkpoint_dir.empty()) {
      ++epoch_, step_in_epoch_ = 0, loss_sum_ = 0;  // saved as "next epoch, nothing done"
      Status s = checkpoint();
      --epoch_;
      return s;
    }
    return Status::ok();
  }

  internal::FinetuneCheckpoint identity() const {
    internal::FinetuneCheckpoint c;
    c.seed = o_.seed;
    c.samples = data_.size();
    c.batch = o_.batch;
    c.epochs = o_.epochs;
    for (const train::Parameter& p : tape_.parameters()) c.names.push_back(p.name);
    return c;
  }

  Status checkpoint() {
    internal::FinetuneCheckpoint c = identity();
    c.epoch = epoch_;
    c.step_in_epoch = step_in_epoch_;
    c.global_step = global_step_;
    c.optimizer_steps = optimizer_->steps();
    c.epoch_loss_sum = loss_sum_;
    c.best_epoch = best_epoch_;
    c.best_metric = best_metric_;
    for (const train::Parameter& p : tape_.parameters()) c.params.push_back(p.value);
    c.state = optimizer_->stateTensors();
    c.state.insert(c.state.end(), ema_.begin(), ema_.end());
    c.best_params = best_params_;
    return internal::saveCheckpoint(o_.checkpoint_dir, c);
  }

  Status resume() {
    internal::FinetuneCheckpoint c;
    NNC_ASSIGN_OR_RETURN(bool found, internal::loadCheckpoint(o_.checkpoint_dir, c));
    if (!found) return Status::ok();
    const internal::FinetuneCheckpoint want = identity();
    const std::string path = internal::checkpointPath(o_.checkpoint_dir);
    if (c.seed != want.seed || c.samples != want.samples || c.batch != want.batch ||
        c.epochs != want.epochs || c.names != want.names)
      return invalidOption("checkpoint_dir",
                           path +
                               ": a checkpoint of another run (seed, data size, batch, epochs or "
                               "parameters differ); remove it or use another checkpoint directory");
    auto& params = tape_.parameters();
    auto& state = optimizer_->stateTensors();
    if (c.params.size() != params.size() || c.state.size() != state.size() + ema_.size())
      return invalidArgument(path + ": the checkpoint does not match the model");
    for (size_t i = 0; i < params.size(); ++i) {
      if (c.params[i].shape() != params[i].value.shape())
        return invalidArgument(path + ": parameter '" + params[i].name + "' changed shape");
      params[i].value = std::move(c.params[i]);
    }
    for (size_t i = 0; i < state.size(); ++i) state[i] = std::move(c.state[i]);
    for (size_t i = 0; i < ema_.size(); ++i) ema_[i] = std::move(c.state[state.size() + i]);
    optimizer_->setSteps(c.optimizer_steps);
    epoch_ = c.epoch, step_in_epoch_ = c.step_in_epoch, global_step_ = c.global_step;
    loss_sum_ = c.epoch_loss_sum;
    best_epoch_ = c.best_epoch, best_metric_ = c.best_metric;
    best_params_ = std::move(c.best_params);
    resumed_ = true;
    if (o_.log)
      o_.log("resumed from " + path + " at epoch " + std::to_string(epoch_ + 1) + ", step " +
             std::to_string(global_step_));
    return Status::ok();
  }

  const FinetuneOptions& o_;
  data::SampleReader& data_;
  train::GradientTape& tape_;
  exec::Executor& teacher_;
  std::unique_ptr<train::Optimizer> optimizer_;
  train::CosineSchedule schedule_;
  int64_t steps_per_epoch_ = 0;
  std::string loss_name_;  // the distillation loss the steps used
  int64_t epoch_ = 0, step_in_epoch_ = 0, global_step_ = 0;
  double loss_sum_ = 0, lr_ = 0;
  int64_t best_epoch_ = 0;
  double best_metric_ = 0;
  std::vector<Tensor> best_params_;
  std::vector<Tensor> ema_;  // averaged weights, tape order (empty: no averaging)
  bool resumed_ = false;
};

// Mean distillation loss of `model` against `teacher` on the first `count` samples of `reader`.
StatusOr<double> modelDistillLoss(const Model& model, exec::Executor& teacher,
                                  data::SampleReader& reader, int64_t count,
                                  const FinetuneOptions& o) {
  exec::ExecutorOptions eo;
  eo.num_threads = o.num_threads;
  NNC_ASSIGN_OR_RETURN(auto ex, exec::Executor::create(model, eo));
  count = std::min(count, reader.size());
  double sum = 0;
  for (int64_t start = 0; start < count; start += passBatch(o)) {
    const int64_t n = std::min(passBatch(o), count - start);
    NNC_ASSIGN_OR_RETURN(Tensor x, reader.readBatch(start, n));
    NNC_ASSIGN_OR_RETURN(std::vector<Tensor> t, teacher.run({x}));
    NNC_ASSIGN_OR_RETURN(std::vector<Tensor> s, ex->run({x}));
    NNC_ASSIGN_OR_RETURN(train::LossResult l, train::distillationLoss(s, t, nullptr, o.loss));
    sum += l.loss * n;
  }
  return count ? sum / count : 0.0;
}

// BatchNorm statistics re-estimated on the training data, kept only when they do not make the
// model worse: top-1 on labelled validation data, else the distillation loss against the
// teacher on the validation data (or, without any, on the re-estimation samples).
Status reestimateAfterTraining(Model& student, exec::Executor& teacher, data::SampleReader& data,
                               const FinetuneOptions& o, FinetuneResult& result) {
  bool has_bn = false;
  for (const auto& n : student.graph->nodes()) has_bn = has_bn || n->isOp("BatchNormalization");
  if (!has_bn || !o.reestimate_batch_norm || !o.fake_quant.empty()) return Status::ok();
  Model candidate = student.clone();
  CalibrationSource calibration{&data, std::min(o.batch_norm_samples, data.size()), passBatch(o),
                                o.num_threads};
  NNC_RETURN_IF_ERROR(reestimateBatchNorm(candidate, calibration)
                          .withContext("BatchNorm "
                                       "re-estimation"));
  if (o.val && o.val_labels) {
    NNC_ASSIGN_OR_RETURN(result.val_top1_before_bn, modelTop1(student, o));
    NNC_ASSIGN_OR_RETURN(result.val_top1_after_bn, modelTop1(candidate, o));
    if (*result.val_top1_after_bn < *result.val_top1_before_bn) return Status::ok();
  } else {
    data::SampleReader& judge = o.val ? *o.val : data;
    const int64_t count =
        o.val ? (o.val_limit < 0 ? o.val->size() : o.val_limit) : calibration.count;
    NNC_ASSIGN_OR_RETURN(result.loss_before_bn,
                         modelDistillLoss(student, teacher, judge, count, o));
    NNC_ASSIGN_OR_RETURN(result.loss_after_bn,
                         modelDistillLoss(candidate, teacher, judge, count, o));
    if (*result.loss_after_bn > *result.loss_before_bn) return Status::ok();
  }
  student = std::move(candidate);
  result.batch_norm_reestimated = true;
  return Status::ok();
}

// The data feeds one input: images or features, or token ids (integers: no gradient flows to
// them, and image augmentation does not apply).
Status checkTapeInputs(const train::GradientTape& tape, const FinetuneOptions& o) {
  if (tape.inputs().size() != 1)
    return unsupported("fine-tuning needs a model with one input, this one has " +
                       std::to_string(tape.inputs().size()));
  const Value* in = tape.inputs().front();
  if (in->dtype() != DType::kFloat32 && o.augment.active())
    return unsupported("--augment-shift / --augment-flip need a float32 image input; '" +
                       in->name() + "' is " + dtypeName(in->dtype()));
  return Status::ok();
}

// Trains `student` (the caller's model, or its copy without the final Softmax) against the
// teacher's executor.
StatusOr<FinetuneResult> trainModel(Model& student, exec::Executor& teacher_exec,
                                    data::SampleReader& data, const FinetuneOptions& options) {
  train::TapeOptions to;
  to.num_threads = options.num_threads;
  to.bf16_conv_grads = options.bf16_conv_grads;
  NNC_ASSIGN_OR_RETURN(auto tape, train::GradientTape::create(student, to));
  NNC_RETURN_IF_ERROR(checkTapeInputs(*tape, options));
  if (teacher_exec.inputs().size() != 1)
    return unsupported("fine-tuning needs a teacher with one input");
  if (tape->outputs().size() != teacher_exec.outputs().size())
    return invalidArgument("the model has " + std::to_string(tape->outputs().size()) +
                           " outputs, the teacher " +
                           std::to_string(teacher_exec.outputs().size()));
  FinetuneRun run(options, data, *tape, teacher_exec);
  NNC_RETURN_IF_ERROR(run.setUp());
  FinetuneResult result;
  result.bf16_conv_grads = options.bf16_conv_grads && train::bf16ConvGradsAvailable();
  NNC_RETURN_IF_ERROR(run.run(result));
  NNC_RETURN_IF_ERROR(tape->writeBack(student));
  if (result.stopped_early) return result;
  NNC_RETURN_IF_ERROR(reestimateAfterTraining(student, teacher_exec, data, options, result));
  return result;
}

}  // namespace

StatusOr<FinetuneResult> finetune(Model& student, const Model& teacher, data::SampleReader& data,
                                  const FinetuneOptions& requested) {
  NNC_RETURN_IF_ERROR(checkOptions(requested, data));
  FinetuneOptions options = requested;
  const int64_t fixed = batchLimit(teacher, batchLimit(student, passBatch(options)));
  if (fixed < passBatch(options)) {
    options.pass_batch = fixed;
    if (options.log)
      options.log("the model fixes its batch at " + std::to_string(fixed) + ": each step of " +
                  std::to_string(options.batch) + " samples runs in passes of " +
                  std::to_string(fixed) + ", their gradients summed");
  }
  if (const int hoisted = train::hoistConstantWeights(student); hoisted > 0 && options.log)
    options.log(std::to_string(hoisted) + " weights held in Constant nodes made trainable");
  exec::ExecutorOptions eo;
  eo.num_threads = options.num_threads;
  // Both models' final Softmax removed when every output has one (softmax_heads.h).
  Model student_logits = student.clone(), teacher_logits = teacher.clone();
  const int heads = train::exposeSoftmaxLogits(student_logits);
  if (heads == 0 || train::exposeSoftmaxLogits(teacher_logits) != heads) {
    NNC_ASSIGN_OR_RETURN(auto teacher_exec, exec::Executor::create(teacher, eo));
    return trainModel(student, *teacher_exec, data, options);
  }
  if (options.log)
    options.log("distilling the logits before the final Softmax of " + std::to_string(heads) +
                " output" + (heads > 1 ? "s" : ""));
  NNC_ASSIGN_OR_RETURN(auto teacher_exec, exec::Executor::create(teacher_logits, eo));
  FinetuneOptions o = options;
  o.loss.softmax_logits = true;
  NNC_ASSIGN_OR_RETURN(FinetuneResult result, trainModel(student_logits, *teacher_exec, data, o));
  train::copyInitializers(student_logits, student);
  result.softmax_logits = heads;
  return result;
}

Status checkTrainable(const Model& model) {
  Model copy = model.clone();
  train::hoistConstantWeights(copy);
  NNC_ASSIGN_OR_RETURN(auto tape, train::GradientTape::create(copy, {}));
  return checkTapeInputs(*tape, {});
}

}  // namespace nnc
