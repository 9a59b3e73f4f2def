// Training speed and memory of the gradient tape against the executor's inference, one mode per
// process so each peak RSS is its own (bench/train_speed.sh runs both and prints the table).
//   nnc_train_bench MODEL infer|train [--batch 64] [--iters 20] [--threads 2]
// Prints one line: mode images_per_second images_per_cpu_second peak_rss_mib.

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>
#include <string>

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

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(
        stderr, "usage: nnc_train_bench MODEL infer|train [--batch B] [--iters N] [--threads T]\n");
    return 2;
  }
  const std::string mode = argv[2];
  int64_t batch = 64;
  int iters = 20, threads = 2;
  for (int i = 3; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--batch")) batch = std::stoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--iters")) iters = std::stoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--threads")) threads = std::stoi(argv[i + 1]);
  }
  auto model = loadModel(argv[1]);
  if (!model.isOk()) {
    std::fprintf(stderr, "%s: %s\n", argv[1], model.status().toString().c_str());
    return 4;
  }
  std::pair<double, double> ips;
  if (mode == "infer") {
    auto ex = exec::Executor::create(model.value(), {.num_threads = threads});
    if (!ex.isOk()) return 3;
    const Tensor x = randomBatch(*ex.value()->inputs()[0], batch);
    ips = imagesPerSecond(batch, iters, [&] { (void)ex.value()->run({x}); });
  } else {
    auto tape = train::GradientTape::create(model.value(), {.num_threads = threads});
    if (!tape.isOk()) {
      std::fprintf(stderr, "%s\n", tape.status().toString().c_str());
      return 3;
    }
    train::GradientTape& t = *tape.value();
    const Tensor x = randomBatch(*t.inputs()[0], batch);
    ips = imagesPerSecond(batch, iters, [&] {
      t.zeroGrad();
      auto y = t.forward({x});
      std::vector<Tensor> g;
      for (const Tensor& o : y.value()) {
        Tensor d(DType::kFloat32, o.shape());
        std::fill_n(d.mutableData<float>().data(), d.numel(), 1e-3f);
        g.push_back(std::move(d));
      }
      (void)t.backward(std::move(g));
    });
  }
  std::printf("%s %.1f %.1f %.1f\n", mode.c_str(), ips.first, ips.second, peakRssMib());
  return 0;
}
