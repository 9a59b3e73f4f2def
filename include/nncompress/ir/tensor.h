#pragma once
// Tensor: a dense, row-major array of one dtype. Bytes live in a std::string so that tensor data
// read from a file can be moved in and out of protobuf messages without a copy. Copies share the
// bytes (copy-on-write): copying a tensor, or cloning a whole model, copies no tensor data until
// one of the copies is written through mutableBytes() / mutableData().

#include <cstdint>
#include <cstring>
#include <memory>
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
    if (!values.empty()) std::memcpy(t.mutableBytes().data(), values.data(), t.byteSize());
    return t;
  }

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int axis) const { return shape_.at(axis); }
  int64_t numel() const { return numel_; }
  size_t byteSize() const { return bytes().size(); }

  const std::string& bytes() const { return bytes_ ? *bytes_ : emptyBytes(); }
  // The bytes for writing: copied first when another tensor shares them.
  std::string& mutableBytes();
  // Moves the storage out (leaves this tensor empty of data; for zero-copy export). Copies when
  // the bytes are shared.
  std::string releaseBytes();
  // True when another tensor (a copy, or a cloned model's) shares these bytes.
  bool sharesBytes() const { return bytes_ && bytes_.use_count() > 1; }
  const std::vector<std::string>& strings() const { return strings_; }

  // Checked typed access: aborts (a bug) when T does not match dtype.
  template <typename T>
  std::span<const T> data() const {
    NNC_CHECK(DTypeOf<T>::value == dtype_ ||
                  (sizeof(T) == 2 && (dtype_ == DType::kFloat16 || dtype_ == DType::kBFloat16)),
              std::string("typed access as wrong dtype ") + dtypeName(dtype_));
    return {reinterpret_cast<const T*>(bytes().data()), static_cast<size_t>(numel_)};
  }
  template <typename T>
  std::span<T> mutableData() {
    NNC_CHECK(DTypeOf<T>::value == dtype_,
              std::string("typed access as wrong dtype ") + dtypeName(dtype_));
    return {reinterpret_cast<T*>(mutableBytes().data()), static_cast<size_t>(numel_)};
  }

  // Element i as double, for any numeric dtype (slow; for tests, printing and small constants).
  double elementAsDouble(int64_t i) const;
  // Values of an integer tensor widened to int64 (shape constants, axes).
  std::vector<int64_t> toInt64Vector() const;

  // Keeps only the given indices along `axis`, in the given order. Works for every dtype,
  // packed 4-bit types included.
  StatusOr<Tensor> gather(int axis, std::span<const int64_t> keep) const;

  bool operator==(const Tensor& other) const {
    return dtype_ == other.dtype_ && shape_ == other.shape_ && bytes() == other.bytes() &&
           strings_ == other.strings_;
  }

 private:
  static const std::string& emptyBytes();

  DType dtype_ = DType::kFloat32;
  Shape shape_;
  int64_t numel_ = 1;
  std::shared_ptr<std::string> bytes_;  // nullptr: no bytes (empty); shared by copies
  std::vector<std::string> strings_;    // only for DType::kString
};

// 4-bit packing, low nibble first (the ONNX layout).
int packedNibble(const std::string& bytes, int64_t index, bool is_signed);
void setPackedNibble(std::string& bytes, int64_t index, int value);

}  // namespace nnc
