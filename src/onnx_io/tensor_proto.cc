#include <fstream>
#include <limits>
#include <optional>
#include <string>

#include "proto_convert.h"

namespace nnc::onnx_io_internal {
namespace {

using onnx::TensorProto;

template <typename Dst, typename Src>
std::string packTyped(const Src& field) {
  std::string bytes(field.size() * sizeof(Dst), '\0');
  Dst* out = reinterpret_cast<Dst*>(bytes.data());
  for (int i = 0; i < field.size(); ++i) out[i] = static_cast<Dst>(field.Get(i));
  return bytes;
}

Status checkExternalLocation(const std::string& location) {
  const std::filesystem::path p(location);
  if (location.empty()) return invalidModel("external data has no location");
  if (p.is_absolute()) return invalidModel("external data location '" + location + "' is absolute");
  for (const auto& part : p)
    if (part == "..")
      return invalidModel("external data location '" + location + "' leaves the model's folder");
  return Status::ok();
}

StatusOr<std::string> readExternal(const TensorProto& proto, const std::filesystem::path& base_dir,
                                   int64_t expected_bytes) {
  std::string location;
  int64_t offset = 0, length = -1;
  for (const auto& entry : proto.external_data()) {
    try {
      if (entry.key() == "location")
        location = entry.value();
      else if (entry.key() == "offset")
        offset = std::stoll(entry.value());
      else if (entry.key() == "length")
        length = std::stoll(entry.value());
    } catch (const std::exception&) {
      return invalidModel("external data field '" + entry.key() + "' is not a number");
    }
  }
  NNC_RETURN_IF_ERROR(checkExternalLocation(location));
  if (offset < 0) return invalidModel("external data offset is negative");
  if (length < 0) length = expected_bytes;
  if (length != expected_bytes)
    return invalidModel("external data length " + std::to_string(length) + " does not match the " +
                        std::to_string(expected_bytes) + " bytes its shape needs");
  const std::filesystem::path file = base_dir / location;
  std::ifstream in(file, std::ios::binary);
  if (!in) return ioError("cannot open external data file '" + file.string() + "'");
  in.seekg(0, std::ios::end);
  const int64_t size = static_cast<int64_t>(in.tellg());
  if (offset > size || length > size - offset)
    return invalidModel("external data file '" + file.string() + "' is too short (" +
                        std::to_string(size) + " bytes) for offset " + std::to_string(offset) +
                        " + length " + std::to_string(length));
  std::string bytes(static_cast<size_t>(length), '\0');
  in.seekg(offset);
  in.read(bytes.data(), length);
  if (!in) return ioError("read failed in external data file '" + file.string() + "'");
  return bytes;
}

// The bytes of a tensor stored in the proto's typed fields (float_data, int32_data, ...), or
// nothing when the dtype has no such field.
std::optional<std::string> packTypedFields(const TensorProto& proto, DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return packTyped<float>(proto.float_data());
    case DType::kComplex64:
      return packTyped<float>(proto.float_data());
    case DType::kFloat64:
      return packTyped<double>(proto.double_data());
    case DType::kComplex128:
      return packTyped<double>(proto.double_data());
    case DType::kInt64:
      return packTyped<int64_t>(proto.int64_data());
    case DType::kUInt32:
      return packTyped<uint32_t>(proto.uint64_data());
    case DType::kUInt64:
      return packTyped<uint64_t>(proto.uint64_data());
    case DType::kInt32:
      return packTyped<int32_t>(proto.int32_data());
    case DType::kInt16:
      return packTyped<int16_t>(proto.int32_data());
    case DType::kUInt16:
    case DType::kFloat16:
    case DType::kBFloat16:
      return packTyped<uint16_t>(proto.int32_data());
    case DType::kInt8:
      return packTyped<int8_t>(proto.int32_data());
    case DType::kUInt8:
    case DType::kBool:
    case DType::kFloat8E4M3FN:
    case DType::kFloat8E4M3FNUZ:
    case DType::kFloat8E5M2:
    case DType::kFloat8E5M2FNUZ:
      return packTyped<uint8_t>(proto.int32_data());
    case DType::kInt4:
    case DType::kUInt4:  // int32_data holds one packed byte (two values) per entry
      return packTyped<uint8_t>(proto.int32_data());
    default:
      return std::nullopt;
  }
}

}  // namespace

StatusOr<Tensor> tensorFromProto(TensorProto& proto, const std::filesystem::path& base_dir,
                                 int64_t* external_bytes_read) {
  const std::string label = proto.name().empty() ? "tensor" : "tensor '" + proto.name() + "'";
  auto dtype_opt = dtypeFromOnnx(proto.data_type());
  if (!dtype_opt)
    return invalidModel(label + " has unknown data type " + std::to_string(proto.data_type()));
  const DType dtype = *dtype_opt;
  Shape shape(proto.dims().begin(), proto.dims().end());
  const int64_t numel = shapeNumel(shape);
  if (numel < 0) return invalidModel(label + " has invalid dims " + shapeToString(shape));
  if (proto.has_segment()) return unsupported(label + " uses segments");

  if (dtype == DType::kString) {
    if (proto.string_data_size() != numel)
      return invalidModel(label + " has " + std::to_string(proto.string_data_size()) +
                          " strings but its shape needs " + std::to_string(numel));
    return Tensor::fromStrings(std::move(shape),
                               {proto.string_data().begin(), proto.string_data().end()});
  }
  const int bits = dtypeBits(dtype);
  if (bits == 0) return unsupported(label + " has data type " + dtypeName(dtype));
  // Guard the multiplication below (storageBytes: numel * bits) against absurd shapes from
  // malformed files. Widest dtype is complex128 = 128 bits (was /16: overflowed, found by fuzz/).
  if (numel > std::numeric_limits<int64_t>::max() / 128)
    return invalidModel(label + " is too large: " + shapeToString(shape));
  const int64_t expected = storageBytes(dtype, numel);
  const std::string data_label = label + " (" + dtypeName(dtype) + shapeToString(shape) + ")";

  std::string bytes;
  if (proto.data_location() == TensorProto::EXTERNAL) {
    auto ext = readExternal(proto, base_dir, expected);
    if (!ext.isOk()) return ext.status().withContext(label);
    bytes = std::move(ext).value();
    if (external_bytes_read) *external_bytes_read += expected;
  } else if (proto.has_raw_data()) {
    bytes.swap(*proto.mutable_raw_data());
  } else {
    auto packed = packTypedFields(proto, dtype);
    if (!packed) return unsupported(data_label + " has no supported data field");
    bytes = std::move(*packed);
  }
  if (static_cast<int64_t>(bytes.size()) != expected)
    return invalidModel(data_label + " has " + std::to_string(bytes.size()) +
                        " bytes of data but its shape needs " + std::to_string(expected));
  return Tensor::fromBytes(dtype, std::move(shape), std::move(bytes));
}

void tensorToProto(Tensor& tensor, bool release, TensorProto* proto) {
  proto->set_data_type(static_cast<int32_t>(tensor.dtype()));
  for (int64_t d : tensor.shape()) proto->add_dims(d);
  if (tensor.dtype() == DType::kString) {
    for (const std::string& s : tensor.strings()) proto->add_string_data(s);
    return;
  }
  if (release) {
    *proto->mutable_raw_data() = tensor.releaseBytes();
  } else {
    proto->set_raw_data(tensor.bytes());
  }
}

ValueType valueTypeFromProto(const onnx::TypeProto& type) {
  ValueType vt;
  vt.denotation = type.denotation();
  if (type.value_case() != onnx::TypeProto::kTensorType) {
    // Sequences, maps, optionals, sparse tensors: kept verbatim. An empty TypeProto stays empty.
    if (type.value_case() != onnx::TypeProto::VALUE_NOT_SET)
      vt.opaque_type = type.SerializeAsString();
    return vt;
  }
  const auto& t = type.tensor_type();
  vt.dtype = dtypeFromOnnx(t.elem_type()).value_or(DType::kUndefined);
  if (t.has_shape()) {
    std::vector<Dim> dims;
    for (const auto& d : t.shape().dim()) {
      if (d.has_dim_value())
        dims.push_back(Dim::known(d.dim_value()));
      else if (d.has_dim_param())
        dims.push_back(Dim::symbol(d.dim_param()));
      else
        dims.push_back(Dim{});
    }
    vt.shape = std::move(dims);
  }
  return vt;
}

void valueTypeToProto(const ValueType& type, onnx::TypeProto* proto) {
  if (!type.isTensor()) {
    proto->ParseFromString(type.opaque_type);
    if (!type.denotation.empty()) proto->set_denotation(type.denotation);
    return;
  }
  if (!type.denotation.empty()) proto->set_denotation(type.denotation);
  if (type.dtype == DType::kUndefined && !type.shape) return;
  auto* t = proto->mutable_tensor_type();
  t->set_elem_type(static_cast<int32_t>(type.dtype));
  if (type.shape) {
    auto* shape = t->mutable_shape();
    for (const Dim& d : *type.shape) {
      auto* dim = shape->add_dim();
      if (d.isKnown())
        dim->set_dim_value(d.value);
      else if (!d.param.empty())
        dim->set_dim_param(d.param);
    }
  }
}

}  // namespace nnc::onnx_io_internal
