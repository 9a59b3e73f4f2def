// GEMM compiled for the avx2 instruction set (flags set per file in CMakeLists.txt).
#define NNC_GEMM_NS gemm_avx2
#define NNC_GEMM_EIGEN_NS nnc_eigen_avx2
#include "gemm_impl.inc"
