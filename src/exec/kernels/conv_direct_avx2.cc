// Direct convolution compiled for the avx2 instruction set (flags set per file in CMakeLists.txt).
#define NNC_CONV_NS conv_direct_avx2
#define NNC_CONV_LANES 8
#define NNC_CONV_TILE 12
#include "conv_direct_impl.inc"
