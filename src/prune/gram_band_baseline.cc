// addGramBand with the baseline instruction set (gram_band_impl.inc).
#define Eigen nnc_eigen_gram_baseline
#define NNC_GRAM_BAND_FN addGramBandBaseline
#include "gram_band_impl.inc"
