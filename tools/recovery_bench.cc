// Measures recovery after pruning: prunes a model uniformly (l1, a ratio of every prunable
// group), recovers with none / bn / bn-single / lsq / lsq+bn, reports the time and peak RSS of
// the recovery step and the accuracy and fidelity on test data.
//   nnc_recovery_bench MODEL MODE [--ratio R] [--calib N] [--eval N] [--ridge X]
//       [--positions P] [--threads T] [--save OUT.onnx]
// Calibration uses the Fashion-MNIST TRAIN images, evaluation the t10k TEST images.

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "nncompress/onnx_io/model_io.h"
#include "nncompress/pipeline/evaluate.h"
#include "nncompress/prune/criteria.h"
#include "nncompress/prune/recovery.h"

namespace {

const char* kDir = "/usr/share/datasets/fashion-mnist/";

int fail(const nnc::Status& s) {
  std::fprintf(stderr, "error: %s\n", s.toString().c_str());
  return 5;
}

long peakRssKb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace nnc;
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL none|bn|bn-single|lsq|lsq+bn [options]\n", argv[0]);
    return 2;
  }
  const std::string model_path = argv[1], mode = argv[2];
  double ratio = 0.5, ridge = 1e-3;
  int64_t calib = 1024, eval_limit = 10000, positions = 64;
  int threads = 0;
  std::string save;
  bool residual = true;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--ratio")
      ratio = std::stod(v);
    else if (k == "--calib")
      calib = std::stoll(v);
    else if (k == "--eval")
      eval_limit = std::stoll(v);
    else if (k == "--ridge")
      ridge = std::stod(v);
    else if (k == "--positions")
      positions = std::stoll(v);
    else if (k == "--threads")
      threads = std::stoi(v);
    else if (k == "--save")
      save = v;
    else if (k == "--residual")
      residual = v == "1";
    else
      return std::fprintf(stderr, "unknown option %s\n", k.c_str()), 2;
  }
  auto original = loadModel(model_path);
  if (!original.isOk()) return fail(original.status());
  const ChannelAnalysis analysis = analyzeChannels(*original);
  auto criterion = makeCriterion("l1");
  if (!criterion.isOk()) return fail(criterion.status());
  UniformPlanOptions plan_options;
  plan_options.ratio = ratio;
  auto plan = planUniformPruning(analysis, **criterion, plan_options);
  if (!plan.isOk()) return fail(plan.status());
  auto pruned = cloneModel(*original);
  if (!pruned.isOk()) return fail(pruned.status());
  const ChannelAnalysis pruned_analysis = analyzeChannels(*pruned);  // same group ids
  if (Status s = applyChannelPruning(*pruned, pruned_analysis, *plan); !s.isOk()) return fail(s);

  data::Preprocess pre;
  pre.mean = {0.2860f};
  pre.std = {0.3530f};
  auto train = data::openData(std::string(kDir) + "train-images-idx3-ubyte.gz", pre);
  if (!train.isOk()) return fail(train.status());
  CalibrationSource source;
  source.reader = train->get();
  source.count = calib;
  source.num_threads = threads;

  const long rss_before = peakRssKb();
  const auto t0 = std::chrono::steady_clock::now();
  if (mode == "bn" || mode == "bn-single") {
    BatchNormOptions bn;
    bn.sequential = mode == "bn";
    if (Status s = reestimateBatchNorm(*pruned, source, bn); !s.isOk()) return fail(s);
  } else if (mode == "lsq" || mode == "lsq+bn") {
    LeastSquaresOptions lsq;
    lsq.ridge = ridge;
    lsq.max_positions_per_image = positions;
    lsq.compensate_residuals = residual;
    auto layers = reconstructLeastSquares(*original, *pruned, analysis, *plan, source, lsq);
    if (!layers.isOk()) return fail(layers.status());
    for (const LayerRecovery& l : *layers)
      std::printf("  %-28s rel. error %.4f -> %.4f\n", l.layer.c_str(), l.error_before,
                  l.error_after);
    if (mode == "lsq+bn") {
      if (Status s = reestimateBatchNorm(*pruned, source); !s.isOk()) return fail(s);
    }
  } else if (mode != "none") {
    std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
    return 2;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const long rss_after = peakRssKb();
  if (!save.empty()) {
    if (Status s = saveModel(*pruned, save); !s.isOk()) return fail(s);
  }

  if (eval_limit == 0) {  // recovery cost only
    std::printf(
        "%s mode=%s ratio=%.2f calib=%lld: recovery %.2f s, peak RSS %ld MB (before "
        "recovery %ld MB)\n",
        model_path.c_str(), mode.c_str(), ratio, static_cast<long long>(calib), seconds,
        rss_after / 1024, rss_before / 1024);
    return 0;
  }
  auto test = data::openData(std::string(kDir) + "t10k-images-idx3-ubyte.gz", pre);
  if (!test.isOk()) return fail(test.status());
  auto labels = data::readLabels(std::string(kDir) + "t10k-labels-idx1-ubyte.gz");
  if (!labels.isOk()) return fail(labels.status());
  auto model_exec = exec::Executor::create(*pruned, {threads});
  auto ref_exec = exec::Executor::create(*original, {threads});
  if (!model_exec.isOk()) return fail(model_exec.status());
  if (!ref_exec.isOk()) return fail(ref_exec.status());
  EvalOptions eval;
  eval.limit = eval_limit;
  eval.batch = 100;
  auto result = evaluate(**model_exec, **test, &*labels, ref_exec->get(), eval);
  if (!result.isOk()) return fail(result.status());
  std::printf(
      "%s mode=%s ratio=%.2f calib=%lld: top1=%.4f agreement=%.4f cosine=%.4f (n=%lld) "
      "recovery %.2f s, peak RSS %ld MB (before recovery %ld MB)\n",
      model_path.c_str(), mode.c_str(), ratio, static_cast<long long>(calib), *result->top1,
      *result->agreement, *result->cosine, static_cast<long long>(result->count), seconds,
      rss_after / 1024, rss_before / 1024);
  return 0;
}
