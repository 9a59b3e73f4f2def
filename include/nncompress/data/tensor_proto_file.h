#pragma once
// Reads a serialized ONNX TensorProto (.pb, as in ONNX test_data_set_N folders) without protobuf:
// dims, data_type, and the data from raw_data or the typed float/int32/int64/double/uint64
// fields. External data and string tensors are rejected. Only onnx_io sees protobuf headers.

#include <string>

#include "nncompress/ir/status.h"
#include "nncompress/ir/tensor.h"

namespace nnc::data {

StatusOr<Tensor> readTensorProtoFile(const std::string& path);
// Parses the bytes of a TensorProto; `source` names it in error messages.
StatusOr<Tensor> parseTensorProto(const std::string& bytes, const std::string& source);

}  // namespace nnc::data
