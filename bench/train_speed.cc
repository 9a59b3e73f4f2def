// Training speed and memory of the gradient tape against the executor's inference, one mode per
// process so each peak RSS is its own (bench/train_speed.sh runs both and prints the table).
//   nnc_train_bench MODEL infer|train [--batch 64] [--iters 20] [--threads 2]
//                   [--grad-precision bf16|fp32]   (Conv gradients; bf16 as finetune's
//                   default)
// Prints one line: mode images_per_second images_per_cpu_second peak_rss_mib.
//   nnc_train_bench MODEL alternate [--blocks 9] ...   (both in one process, for the speed ratio)
// Prints: alternate median_ratio min_ratio max_ratio infer_images_per_second
// train_images_per_second.

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <string>

#include "nncompress/analysis/model_stats.h"
#include "nncompress/exec/executor.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/train/tape.h"

using namespace nnc;

namespace {

double peakRssMib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

Tensor randomBatch(const Value& input, int64_t batch) {
  Shape shape{batch, 1, 28, 28};
  if (auto s = input.staticShape(); s && !s->empty()) shape = *s;
  if (input.type().shape && !input.type().shape->empty()) {
    const auto& dims = *input.type().shape;
    shape.assign(dims.size(), 1);
    for (size_t i = 0; i < dims.size(); ++i) shape[i] = dims[i].isKnown() ? dims[i].value : 1;
    shape[0] = batch;
  }
  Tensor t(DType::kFloat32, shape);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  for (float& v : t.mutableData<float>()) v = nd(rng);
  return t;
}

double cpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Images per wall-clock second and per CPU second (the latter barely moves when other processes
// share the cores).
template <typename Fn>
std::pair<double, double> imagesPerSecond(int64_t batch, int iters, Fn&& step) {
  for (int i = 0; i < 2; ++i) step();  // warm-up: pools, page faults, packing
  const auto t0 = std::chrono::steady_clock::now();
  const double c0 = cpuSeconds();
  for (int i = 0; i < iters; ++i) step();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double images = static_cast<double>(batch) * iters;
  return {images / s, images / (cpuSeconds() - c0)};
}

using Step = std::function<void()>;

// One inference run of the executor on a fixed random batch.
Step inferenceStep(const Model& model, int64_t batch, int threads) {
  auto ex = exec::Executor::create(model, {.num_threads = threads});
  if (!ex.isOk()) {
    std::fprintf(stderr, "%s\n", ex.status().toString().c_str());
    std::exit(3);
  }
  std::shared_ptr<exec::Executor> e = std::move(ex).value();
  auto x = std::make_shared<Tensor>(randomBatch(*e->inputs()[0], batch));
  return [e, x] { (void)e->run({*x}); };
}

// One training step of the tape (zeroGrad, forward, backward of a constant output gradient).
Step trainingStep(const Model& model, int64_t batch, int threads, bool bf16) {
  auto tape = train::GradientTape::create(model, {.num_threads = threads, .bf16_conv_grads = bf16});
  if (!tape.isOk()) {
    std::fprintf(stderr, "%s\n", tape.status().toString().c_str());
    std::exit(3);
  }
  std::shared_ptr<train::GradientTape> t = std::move(tape).value();
  auto x = std::make_shared<Tensor>(randomBatch(*t->inputs()[0], batch));
  return [t, x] {
    t->zeroGrad();
    auto y = t->forward({*x});
    if (!y.isOk()) {
      std::fprintf(stderr, "%s\n", y.status().toString().c_str());
      std::exit(3);
    }
    std::vector<Tensor> g;
    for (const Tensor& o : y.value()) {
      Tensor d(DType::kFloat32, o.shape());
      std::fill_n(d.mutableData<float>().data(), d.numel(), 1e-3f);
      g.push_back(std::move(d));
    }
    if (Status st = t->backward(std::move(g)); !st.isOk()) {
      std::fprintf(stderr, "%s\n", st.toString().c_str());
      std::exit(3);
    }
  };
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double secondsOf(const Step& step, int times) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < times; ++i) step();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Both in one process, step by step: two inference runs, then one training step, `iters` times
// per block, as a distillation epoch alternates teacher inference and student steps. Each block's
// ratio (training images/s over inference images/s) is measured over the same second or two, so
// the machine's drift (its throughput moves by 20% over minutes here) cancels. Prints the median
// block ratio, the lowest and highest, and the median images/s of each.
void alternate(const Model& model, int64_t batch, int iters, int threads, int blocks, bool bf16) {
  const Step infer = inferenceStep(model, batch, threads);
  const Step train = trainingStep(model, batch, threads, bf16);
  for (int i = 0; i < 2; ++i) infer(), train();  // warm-up: pools, page faults, packing
  std::vector<double> ratios, infer_ips, train_ips;
  for (int b = 0; b < blocks; ++b) {
    double ti = 0, tt = 0;
    for (int i = 0; i < iters; ++i) ti += secondsOf(infer, 2), tt += secondsOf(train, 1);
    infer_ips.push_back(2.0 * iters * static_cast<double>(batch) / ti);
    train_ips.push_back(iters * static_cast<double>(batch) / tt);
    ratios.push_back(train_ips.back() / infer_ips.back());
  }
  std::printf("alternate %.4f %.4f %.4f %.1f %.1f\n", median(ratios),
              *std::min_element(ratios.begin(), ratios.end()),
              *std::max_element(ratios.begin(), ratios.end()), median(infer_ips),
              median(train_ips));
}

// Multiply-adds per image of an inference run and of a training step: the forward, plus dW of
// every layer with a float weight, plus dX of every layer whose input 0 carries a gradient (is
// computed from a weight; the stem's image needs none). Their quotient bounds the train/infer
// ratio when both run their kernels equally fast and do nothing else. Also prints the share that
// --grad-precision bf16 runs with bf16 products (every Conv dW, stride-1 Conv dX with >= 2 output
// channels a group), at up to twice the rate.
void multiplyAdds(const Model& model) {
  const Graph& g = *model.graph;
  std::set<const Value*> carries;  // values that depend on a trainable weight
  auto isWeight = [](const Value* v) {
    return v && v->isInitializer() && v->dtype() == DType::kFloat32 && !v->isGraphInput();
  };
  int64_t infer = 0, train = 0, half = 0;  // half: run with bf16 products (Conv dW, dX)
  for (const auto& n : g.nodes()) {
    bool any = false, weighted = false;
    for (size_t i = 0; i < n->numInputs(); ++i) {
      const Value* v = n->input(i);
      weighted |= i > 0 && isWeight(v);
      any |= isWeight(v) || carries.count(v);
    }
    if (any)
      for (const Value* out : n->outputs()) carries.insert(out);
    const int64_t macs = nodeMacs(*n).value_or(0);
    const bool dx = n->numInputs() > 0 && carries.count(n->input(0));
    infer += macs;
    train += macs + (weighted ? macs : 0) + (dx ? macs : 0);
    if (n->opType() != "Conv") continue;
    const auto strides = n->intsAttr("strides");
    const bool stride1 =
        std::all_of(strides.begin(), strides.end(), [](int64_t s) { return s == 1; });
    const Value* w = n->numInputs() > 1 ? n->input(1) : nullptr;
    const int64_t per_group =
        w && w->initializer() ? w->initializer()->dim(0) / n->intAttr("group", 1) : 0;
    half += (weighted ? macs : 0) + (dx && stride1 && per_group >= 2 ? macs : 0);
  }
  std::printf("macs %lld %lld %lld\n", static_cast<long long>(infer), static_cast<long long>(train),
              static_cast<long long>(half));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: nnc_train_bench MODEL infer|train|alternate|macs [--batch B] [--iters N] "
                 "[--threads T] [--blocks K] [--grad-precision bf16|fp32]\n");
    return 2;
  }
  const std::string mode = argv[2];
  int64_t batch = 64;
  int iters = 20, threads = 2, blocks = 9;
  bool bf16 = true;
  for (int i = 3; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--grad-precision")) bf16 = !std::strcmp(argv[i + 1], "bf16");
    if (!std::strcmp(argv[i], "--batch")) batch = std::stoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--iters")) iters = std::stoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--threads")) threads = std::stoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--blocks")) blocks = std::stoi(argv[i + 1]);
  }
  if (batch < 1 || iters < 1 || threads < 1 || blocks < 1) {
    std::fprintf(stderr,
                 "nnc_train_bench: --batch, --iters, --threads and --blocks must be >= 1\n");
    return 2;
  }
  auto model = loadModel(argv[1]);
  if (!model.isOk()) {
    std::fprintf(stderr, "%s: %s\n", argv[1], model.status().toString().c_str());
    return 4;
  }
  if (mode == "macs") {
    multiplyAdds(model.value());
    return 0;
  }
  if (mode == "precision") {  // what --grad-precision runs as on this CPU
    std::printf("%s\n", bf16 && train::bf16ConvGradsAvailable() ? "bf16 Conv gradients"
                                                                : "fp32 Conv gradients");
    return 0;
  }
  if (mode == "alternate") {
    alternate(model.value(), batch, iters, threads, blocks, bf16);
    return 0;
  }
  if (mode != "infer" && mode != "train") {
    std::fprintf(stderr, "nnc_train_bench: unknown mode '%s'\n", mode.c_str());
    return 2;
  }
  const Step step = mode == "infer" ? inferenceStep(model.value(), batch, threads)
                                    : trainingStep(model.value(), batch, threads, bf16);
  const auto ips = imagesPerSecond(batch, iters, step);
  std::printf("%s %.1f %.1f %.1f\n", mode.c_str(), ips.first, ips.second, peakRssMib());
  return 0;
}
