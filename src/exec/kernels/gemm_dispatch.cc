// Run-time choice of the GEMM instruction set. This file is compiled with the baseline flags;
// the AVX2/AVX-512 translation units are only entered after __builtin_cpu_supports says so.

#include <cstdlib>
#include <cstring>

#include "gemm.h"

namespace nnc::exec {
namespace {

GemmIsa detectIsa() {
  __builtin_cpu_init();
  GemmIsa best = GemmIsa::kBaseline;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = GemmIsa::kAvx2;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw"))
    best = GemmIsa::kAvx512;
  // NNC_GEMM_ISA caps the choice (never raises it above what the CPU has).
  if (const char* env = std::getenv("NNC_GEMM_ISA")) {
    GemmIsa cap = best;
    if (!std::strcmp(env, "baseline")) cap = GemmIsa::kBaseline;
    if (!std::strcmp(env, "avx2")) cap = GemmIsa::kAvx2;
    if (!std::strcmp(env, "avx512")) cap = GemmIsa::kAvx512;
    if (static_cast<int>(cap) < static_cast<int>(best)) best = cap;
  }
  return best;
}

}  // namespace

bool gemmIsaSupported(GemmIsa isa) {
  __builtin_cpu_init();
  switch (isa) {
    case GemmIsa::kBaseline:
      return true;
    case GemmIsa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case GemmIsa::kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
  }
  return false;
}

GemmIsa bestGemmIsa() {
  static const GemmIsa isa = detectIsa();
  return isa;
}

const char* gemmIsaName(GemmIsa isa) {
  switch (isa) {
    case GemmIsa::kBaseline:
      return "baseline";
    case GemmIsa::kAvx2:
      return "avx2";
    case GemmIsa::kAvx512:
      return "avx512";
  }
  return "?";
}

void sgemmWithIsa(GemmIsa isa, const GemmArgs& args, const Epilogue& epi) {
  if (args.m <= 0 || args.n <= 0) return;
  switch (isa) {
    case GemmIsa::kAvx512:
      return gemm_avx512::sgemm(args, epi);
    case GemmIsa::kAvx2:
      return gemm_avx2::sgemm(args, epi);
    case GemmIsa::kBaseline:
      return gemm_baseline::sgemm(args, epi);
  }
}

void sgemm(const GemmArgs& args, const Epilogue& epi) { sgemmWithIsa(bestGemmIsa(), args, epi); }

void applyEpilogue(float* c, int64_t m, int64_t n, int64_t ldc, const Epilogue& epi) {
  for (int64_t i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    if (epi.row_bias) {
      const float bias = epi.row_bias[i];
      for (int64_t j = 0; j < n; ++j) row[j] += bias;
    }
    if (epi.col_bias)
      for (int64_t j = 0; j < n; ++j) row[j] += epi.col_bias[j];
    switch (epi.act) {
      case Epilogue::kNone:
        break;
      case Epilogue::kRelu:
        for (int64_t j = 0; j < n; ++j) row[j] = row[j] > 0.f ? row[j] : 0.f;
        break;
      case Epilogue::kClip: {
        const float lo = epi.lo, hi = epi.hi;
        for (int64_t j = 0; j < n; ++j) {
          const float v = row[j] < lo ? lo : row[j];
          row[j] = v > hi ? hi : v;
        }
        break;
      }
      case Epilogue::kLeakyRelu: {
        const float alpha = epi.alpha;
        for (int64_t j = 0; j < n; ++j) row[j] = row[j] < 0.f ? row[j] * alpha : row[j];
        break;
      }
    }
  }
}

}  // namespace nnc::exec
