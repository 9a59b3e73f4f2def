#pragma once
// Single-precision GEMM with a fused epilogue, compiled once per instruction set and picked at
// run time, so the default portable build still uses AVX2/FMA or AVX-512 where the CPU has them.
// This header is plain C++ (no Eigen): the ISA-specific translation units include it, and
// nothing compiled with wider ISA flags may run before the CPU check (see gemm_dispatch.cc).

#include <cstdint>

namespace nnc::exec {

enum class GemmIsa { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

// Activation applied in the GEMM epilogue (after the bias).
struct Epilogue {
  enum Act : int { kNone, kRelu, kClip, kLeakyRelu };
  const float* row_bias = nullptr;  // one value per row of C (conv output channel)
  const float* col_bias = nullptr;  // one value per column of C (Gemm bias vector)
  Act act = kNone;
  float lo = 0.f, hi = 0.f;  // kClip bounds
  float alpha = 0.f;         // kLeakyRelu slope
};

struct GemmArgs {
  int64_t m = 0, n = 0, k = 0;
  const float* a = nullptr;  // row-major [m, k] (or [k, m] when trans_a), leading dim lda
  int64_t lda = 0;
  bool trans_a = false;
  const float* b = nullptr;  // row-major [k, n] (or [n, k] when trans_b), leading dim ldb
  int64_t ldb = 0;
  bool trans_b = false;
  float* c = nullptr;  // row-major [m, n], leading dim ldc; fully overwritten
  int64_t ldc = 0;
  int threads = 1;  // threads the GEMM itself may use (1 inside an outer parallel loop)
};

// C = epilogue(A * B) with the best instruction set this CPU supports.
void sgemm(const GemmArgs& args, const Epilogue& epi = {});
// Same with a given instruction set (for tests); the caller checks gemmIsaSupported first.
void sgemmWithIsa(GemmIsa isa, const GemmArgs& args, const Epilogue& epi = {});
bool gemmIsaSupported(GemmIsa isa);
GemmIsa bestGemmIsa();  // NNC_GEMM_ISA=baseline|avx2|avx512 caps it (for benchmarks and tests)
const char* gemmIsaName(GemmIsa isa);

// Applies the epilogue to an already computed C (baseline code; for non-GEMM producers).
void applyEpilogue(float* c, int64_t m, int64_t n, int64_t ldc, const Epilogue& epi);

// One implementation per ISA, each in its own translation unit and namespace.
namespace gemm_baseline {
void sgemm(const GemmArgs& args, const Epilogue& epi);
}
namespace gemm_avx2 {
void sgemm(const GemmArgs& args, const Epilogue& epi);
}
namespace gemm_avx512 {
void sgemm(const GemmArgs& args, const Epilogue& epi);
}

}  // namespace nnc::exec
