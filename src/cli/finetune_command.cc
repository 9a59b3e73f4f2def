#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "data_options.h"
#include "finetune_run.h"
#include "model_totals.h"
#include "nncompress/cli/commands.h"
#include "nncompress/onnx_io/model_io.h"

namespace nnc::cli {

StatusOr<FinetuneOptions> finetuneOptionsFrom(const TrainSettings& s, int epochs) {
  FinetuneOptions o;
  NNC_ASSIGN_OR_RETURN(o.optimizer.kind, train::parseOptimizerKind(s.optimizer));
  o.epochs = epochs;
  o.batch = s.batch;
  o.learning_rate =
      s.lr > 0 ? s.lr : (o.optimizer.kind == train::OptimizerKind::kSgd ? 1e-2 : 1e-3);
  o.optimizer.weight_decay = s.weight_decay;
  o.optimizer.max_grad_norm = s.max_grad_norm;
  o.loss.temperature = s.temperature;
  o.loss.label_weight = s.label_weight;
  NNC_ASSIGN_OR_RETURN(o.loss.kind, train::parseLossKind(s.loss));
  o.warmup_fraction = s.warmup;
  o.seed = s.seed;
  o.num_threads = s.threads;
  o.reestimate_batch_norm = s.reestimate_bn;
  o.ema_decay = s.ema;
  o.augment.max_shift = s.augment_shift;
  o.augment.flip = s.augment_flip;
  o.teacher_label_weight = s.teacher_label_weight;
  o.bf16_conv_grads = s.grad_precision == "bf16";
  if (s.label_weight < 0) return invalidArgument("--label-weight must not be negative");
  if (s.teacher_label_weight < 0)
    return invalidArgument("--teacher-label-weight must not be negative");
  if (!(s.ema >= 0 && s.ema < 1)) return invalidArgument("--ema must be in [0, 1)");
  if (s.augment_shift < 0) return invalidArgument("--augment-shift must not be negative");
  if (!(s.warmup >= 0 && s.warmup < 1)) return invalidArgument("--warmup must be in [0, 1)");
  if (s.weight_decay < 0) return invalidArgument("--weight-decay must not be negative");
  return o;
}

StatusOr<FinetuneResult> finetuneWithProgress(Model& student, const Model& teacher,
                                              data::SampleReader& data, FinetuneOptions o) {
  auto last = std::chrono::steady_clock::now() - std::chrono::seconds(60);
  const bool tty = ::isatty(STDERR_FILENO) != 0;
  o.progress = [&](const FinetuneProgress& p) {
    const auto now = std::chrono::steady_clock::now();
    const bool final_step = p.step == p.total_steps;
    if (!final_step && now - last < std::chrono::milliseconds(tty ? 250 : 10000)) return;
    last = now;
    char line[200];
    std::snprintf(line, sizeof line,
                  "finetune: epoch %d/%d step %lld/%lld loss %.4f lr %.2g %.0f images/s "
                  "ETA %.0fs",
                  p.epoch, p.epochs, static_cast<long long>(p.step),
                  static_cast<long long>(p.total_steps), p.loss, p.learning_rate,
                  p.images_per_second, p.eta_seconds);
    if (tty) {
      std::fprintf(stderr, "\r%s   %s", line, final_step ? "\n" : "");
      std::fflush(stderr);
    } else {
      spdlog::info("{}", line + 10);
    }
  };
  o.log = [](const std::string& line) { spdlog::info("finetune: {}", line); };
  auto result = finetune(student, teacher, data, o);
  if (!result.isOk()) return result.status();
  spdlog::info("finetune: {} steps, {:.0f} images/s ({} Conv gradients){}{}", result->steps,
               result->images_per_second, result->bf16_conv_grads ? "bf16" : "fp32",
               result->best_epoch ? ", best epoch " + std::to_string(result->best_epoch) : "",
               result->batch_norm_reestimated ? ", BatchNorm statistics re-estimated" : "");
  return result;
}

nlohmann::ordered_json finetuneJson(const FinetuneResult& r) {
  nlohmann::ordered_json j;
  auto epochs = nlohmann::ordered_json::array();
  for (const FinetuneEpoch& e : r.epochs) {
    nlohmann::ordered_json x{
        {"epoch", e.epoch}, {"train_loss", e.train_loss}, {"seconds", e.seconds}};
    if (e.val_top1) x["val_top1"] = *e.val_top1;
    if (e.val_loss) x["val_loss"] = *e.val_loss;
    epochs.push_back(x);
  }
  j["epochs"] = epochs;
  if (r.val_top1_start) j["val_top1_start"] = *r.val_top1_start;
  if (r.val_loss_start) j["val_loss_start"] = *r.val_loss_start;
  j["steps"] = r.steps;
  j["best_epoch"] = r.best_epoch;
  j["resumed"] = r.resumed;
  j["images_per_second"] = r.images_per_second;
  j["grad_precision"] = r.bf16_conv_grads ? "bf16" : "fp32";
  if (!r.loss.empty()) j["loss"] = r.loss;
  j["softmax_logits"] = r.softmax_logits;
  j["batch_norm_reestimated"] = r.batch_norm_reestimated;
  if (r.val_top1_before_bn) j["val_top1_before_bn"] = *r.val_top1_before_bn;
  if (r.val_top1_after_bn) j["val_top1_after_bn"] = *r.val_top1_after_bn;
  if (r.loss_before_bn) j["loss_before_bn"] = *r.loss_before_bn;
  if (r.loss_after_bn) j["loss_after_bn"] = *r.loss_after_bn;
  return j;
}

Status runFinetune(const FinetuneCommandOptions& o) {
  NNC_ASSIGN_OR_RETURN(FinetuneOptions fo, finetuneOptionsFrom(o.train, o.epochs));
  if (o.val.empty() && (!o.val_labels.empty() || !o.val_range.empty()))
    return invalidArgument("--val-labels and --val-range need --val SPEC");
  NNC_RETURN_IF_ERROR(checkOutputPaths(o.model_path, {{"-o", o.output_path}}));
  NNC_RETURN_IF_ERROR(checkOutputIsNotInput(o.teacher_path, o.output_path));
  LoadedModelInfo info, teacher_info;
  NNC_ASSIGN_OR_RETURN(Model student, loadInputModel(o.model_path, o.strict, &info));
  NNC_ASSIGN_OR_RETURN(Model teacher, loadInputModel(o.teacher_path, o.strict, &teacher_info));
  demoteInitializerInputs(student);
  demoteInitializerInputs(teacher);
  NNC_ASSIGN_OR_RETURN(auto reader, openReader(o.data, student, "training data"));
  NNC_ASSIGN_OR_RETURN(std::optional<std::vector<int64_t>> labels, openLabels(o.data, *reader));
  std::unique_ptr<data::SampleReader> val;
  std::optional<std::vector<int64_t>> val_labels;
  if (!o.val.empty()) {
    DataOptions vo = o.data;
    vo.data = {o.val};
    vo.labels = o.val_labels;
    vo.range = o.val_range;
    vo.range_flag = "--val-range";
    NNC_ASSIGN_OR_RETURN(val, openReader(vo, student, "validation data"));
    NNC_ASSIGN_OR_RETURN(val_labels, openLabels(vo, *val));
  }
  fo.labels = labels ? &*labels : nullptr;
  fo.val = val.get();
  fo.val_labels = val_labels ? &*val_labels : nullptr;
  fo.checkpoint_dir = o.checkpoint_dir;
  spdlog::info("finetune: {} epochs on {} samples{}, {} , lr {}", o.epochs, reader->size(),
               labels ? " with labels" : " (distillation only)", o.train.optimizer,
               fo.learning_rate);
  auto result = finetuneWithProgress(student, teacher, *reader, fo);
  if (!result.isOk()) return result.status().withContext(o.model_path);
  WrittenModel output(o.output_path);
  NNC_RETURN_IF_ERROR(output.write(student, info, &teacher));
  output.keep();
  if (o.json) {
    nlohmann::ordered_json j;
    j["output"] = o.output_path;
    j["teacher"] = o.teacher_path;
    j["samples"] = reader->size();
    j["labels"] = labels.has_value();
    j["finetune"] = finetuneJson(*result);
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << "Fine-tuned " << o.model_path << " for " << result->steps << " steps ("
              << static_cast<int64_t>(result->images_per_second) << " images/s)";
    if (result->best_epoch) std::cout << ", best epoch " << result->best_epoch;
    std::cout << "\nwrote " << o.output_path << "\n";
  }
  return Status::ok();
}

}  // namespace nnc::cli
