// GEMM compiled for the avx512 instruction set (flags set per file in CMakeLists.txt).
#define NNC_GEMM_NS gemm_avx512
#define NNC_GEMM_EIGEN_NS nnc_eigen_avx512
#include "gemm_impl.inc"
