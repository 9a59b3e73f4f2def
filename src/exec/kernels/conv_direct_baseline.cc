// Direct convolution compiled for the baseline instruction set (flags set per file in
// CMakeLists.txt).
#define NNC_CONV_NS conv_direct_baseline
#define NNC_CONV_LANES 4
#define NNC_CONV_TILE 12
#include "conv_direct_impl.inc"
