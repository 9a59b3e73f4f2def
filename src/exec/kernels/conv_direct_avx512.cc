// Direct convolution compiled for the avx512 instruction set (flags set per file in
// CMakeLists.txt).
#define NNC_CONV_NS conv_direct_avx512
#define NNC_CONV_LANES 16
#define NNC_CONV_TILE 14
#include "conv_direct_impl.inc"
