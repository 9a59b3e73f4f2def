#pragma once
// NumPy .npy files: read whole arrays (v1-v3 headers, C order, either byte order, gzip too) and
// write them (v1 header, or v2 when the header does not fit, native byte order). Dataset
// streaming of large .npy files lives in dataset.h; these are for whole tensors (`run` outputs,
// tests).

#include <string>

#include "nncompress/ir/status.h"
#include "nncompress/ir/tensor.h"

namespace nnc::data {

StatusOr<Tensor> readNpy(const std::string& path);

// Writes atomically (temp file + rename). Numeric and bool dtypes; kUnsupported for dtypes
// NumPy has no .npy descr for (bfloat16, float8, 4-bit, string).
Status writeNpy(const std::string& path, const Tensor& tensor);

}  // namespace nnc::data
