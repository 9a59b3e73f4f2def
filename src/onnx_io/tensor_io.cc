#include "nncompress/onnx_io/tensor_io.h"

#include "nncompress/onnx_io/file_util.h"
#include "proto_convert.h"

namespace nnc {

StatusOr<Tensor> loadTensorFile(const std::filesystem::path& path) {
  NNC_RETURN_IF_ERROR(checkReadableFile(path));
  NNC_ASSIGN_OR_RETURN(std::string bytes, readFile(path));
  onnx::TensorProto proto;
  if (!proto.ParseFromString(bytes)) return invalidModel("not an ONNX TensorProto file");
  return onnx_io_internal::tensorFromProto(proto, path.parent_path(), nullptr);
}

Status saveTensorFile(const Tensor& tensor, const std::filesystem::path& path) {
  onnx::TensorProto proto;
  Tensor copy = tensor;
  onnx_io_internal::tensorToProto(copy, /*release=*/true, &proto);
  return writeStringAtomically(path, proto.SerializeAsString());
}

}  // namespace nnc
