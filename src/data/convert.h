#pragma once
// Element conversion shared by the readers: any numeric dtype -> float, and byte-order swaps.

#include <cstdint>
#include <string>

#include "nncompress/ir/dtype.h"
#include "nncompress/ir/tensor.h"

namespace nnc::data::internal {

// True for the dtypes the readers turn into float32 (numeric, at least one byte per element).
bool isConvertibleToFloat(DType dtype);
// Converts n elements stored (native byte order) at `src` to float.
void convertToFloat(DType dtype, const char* src, int64_t n, float* dst);
// Bytes of `shape` in `dtype`, or -1 when a dim is negative or the size overflows int64.
int64_t checkedStorageBytes(DType dtype, const Shape& shape);
// Reverses the bytes of each of n elements of `width` bytes, in place.
void swapBytes(char* data, int64_t n, int width);

}  // namespace nnc::data::internal
