#pragma once
// Eigen views of float tensors, kept out of tensor.h so that only code doing linear algebra pays
// for Eigen's headers. A tensor of shape [d0, d1, ...] is viewed as a row-major
// d0 x (d1 * d2 * ...) matrix: for a Conv weight, one row per output channel.

#include <Eigen/Core>

#include "nncompress/ir/tensor.h"

namespace nnc {

using RowMajorMatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMatrixViewF = Eigen::Map<const RowMajorMatrixF>;
using MatrixViewF = Eigen::Map<RowMajorMatrixF>;

inline int64_t eigenRows(const Tensor& t) { return t.rank() == 0 ? 1 : t.dim(0); }
inline int64_t eigenCols(const Tensor& t) {
  const int64_t rows = eigenRows(t);
  return rows == 0 ? 0 : t.numel() / rows;
}

inline ConstMatrixViewF matrixView(const Tensor& t) {
  return ConstMatrixViewF(t.data<float>().data(), eigenRows(t), eigenCols(t));
}
inline MatrixViewF mutableMatrixView(Tensor& t) {
  return MatrixViewF(t.mutableData<float>().data(), eigenRows(t), eigenCols(t));
}

}  // namespace nnc
