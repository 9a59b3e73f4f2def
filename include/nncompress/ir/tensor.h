#pragma once
// Tensor: a dense, row-major array of one dtype. Bytes live in a std::string so that tensor data
// read from a file can be moved in and out of protobuf messages without a copy.

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "nncompress/ir/dtype.h"
#include "nncompress/ir/status.h"

namespace nnc {

using Shape = std::vector<int64_t>;

// Number of elements of a static shape (1 for a scalar). Returns -1 on negative dims or overflow.
int64_t shapeNumel(const Shape& shape);
std::string shapeToString(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;
  // Zero-filled tensor of the given dtype and shape.
  Tensor(DType dtype, Shape shape);
  // Takes ownership of `bytes`, which must hold exactly storageBytes(dtype, numel) bytes.
  static StatusOr<Tensor> fromBytes(DType dtype, Shape shape, std::string bytes);
  static Tensor fromStrings(Shape shape, std::vector<std::string> strings);
  template <typename T>
  static Tensor fromVector(Shape shape, const std::vector<T>& values) {
    Tensor t(DTypeOf<T>::value, std::move(shape));
    NNC_CHECK(static_cast<int64_t>(values.size()) == t.numel(), "fromVector: size mismatch");
    if (!values.empty()) std::memcpy(t.bytes_.data(), values.data(), t.bytes_.size());
    return t;
  }

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int axis) const { return shape_.at(axis); }
  int64_t numel() const { return numel_; }
  size_t byteSize() const { return bytes_.size(); }

  const std::string& bytes() const { return bytes_; }
  std::string& mutableBytes() { return bytes_; }
  // Moves the storage out (leaves this tensor empty of data; for zero-copy export).
  std::string releaseBytes() { return std::move(bytes_); }
  const std::vector<std::string>& strings() const { return strings_; }

  // Checked typed access: aborts (a bug) when T does not match dtype.
  template <typename T>
  std::span<const T> data() const {
    NNC_CHECK(DTypeOf<T>::value == dtype_ ||
                  (sizeof(T) == 2 && (dtype_ == DType::kFloat16 || dtype_ == DType::kBFloat16)),
              std::string("typed access as wrong dtype ") + dtypeName(dtype_));
    return {reinterpret_cast<const T*>(bytes_.data()), static_cast<size_t>(numel_)};
  }
  template <typename T>
  std::span<T> mutableData() {
    NNC_CHECK(DTypeOf<T>::value == dtype_,
              std::string("typed access as wrong dtype ") + dtypeName(dtype_));
    return {reinterpret_cast<T*>(bytes_.data()), static_cast<size_t>(numel_)};
  }

  // Element i as double, for any numeric dtype (slow; for tests, printing and small constants).
  double elementAsDouble(int64_t i) const;
  // Values of an integer tensor widened to int64 (shape constants, axes).
  std::vector<int64_t> toInt64Vector() const;

  // Keeps only the given indices along `axis`, in the given order. Works for every dtype,
  // packed 4-bit types included.
  StatusOr<Tensor> gather(int axis, std::span<const int64_t> keep) const;

  bool operator==(const Tensor& other) const {
    return dtype_ == other.dtype_ && shape_ == other.shape_ && bytes_ == other.bytes_ &&
           strings_ == other.strings_;
  }

 private:
  DType dtype_ = DType::kFloat32;
  Shape shape_;
  int64_t numel_ = 1;
  std::string bytes_;
  std::vector<std::string> strings_;  // only for DType::kString
};

// 4-bit packing, low nibble first (the ONNX layout).
int packedNibble(const std::string& bytes, int64_t index, bool is_signed);
void setPackedNibble(std::string& bytes, int64_t index, int value);

}  // namespace nnc
