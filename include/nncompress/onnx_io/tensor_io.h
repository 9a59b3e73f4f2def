#pragma once
// Single tensors in ONNX TensorProto files (.pb), the layout of the ONNX backend tests'
// test_data_set_N folders.

#include <filesystem>

#include "nncompress/ir/tensor.h"

namespace nnc {

StatusOr<Tensor> loadTensorFile(const std::filesystem::path& path);
Status saveTensorFile(const Tensor& tensor, const std::filesystem::path& path);

}  // namespace nnc
