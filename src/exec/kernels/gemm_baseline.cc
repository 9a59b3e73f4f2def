// GEMM compiled for the baseline instruction set (flags set per file in CMakeLists.txt).
#define NNC_GEMM_NS gemm_baseline
#define NNC_GEMM_EIGEN_NS nnc_eigen_baseline
#include "gemm_impl.inc"
