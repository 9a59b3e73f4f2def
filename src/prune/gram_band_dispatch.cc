// Run-time choice of addGramBand's instruction set (compiled with the baseline flags).

#include "gram_band.h"

namespace nnc::lsq {

bool gramAvx2Supported() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

void addGramBand(const GramUpdate& u, int64_t begin, int64_t end) {
  static const bool avx2 = gramAvx2Supported();
  if (avx2)
    addGramBandAvx2(u, begin, end);
  else
    addGramBandBaseline(u, begin, end);
}

}  // namespace nnc::lsq
