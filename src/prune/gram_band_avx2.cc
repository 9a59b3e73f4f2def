// addGramBand compiled with -mavx2 -mfma (CMakeLists.txt); entered only after the CPU check in
// gram_band_dispatch.cc. Wider vectors and FMA change sums at the level of double rounding only.
#define Eigen nnc_eigen_gram_avx2
#define NNC_GRAM_BAND_FN addGramBandAvx2
#include "gram_band_impl.inc"
