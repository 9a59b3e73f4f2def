// Det (11): the determinant of each M x M matrix in the innermost two axes of X [*, M, M]; the
// output has the batch shape [*] (a scalar for a 2-D input). Each matrix is LU-factorised with
// partial pivoting in double: det = (-1)^swaps * prod(diagonal of U). The empty matrix has
// determinant 1.

#include <cmath>
#include <utility>
#include <vector>

#include "kernel_util.h"
#include "kernels.h"

namespace nnc::exec {
namespace {

// Destroys `a` (row-major n x n).
double determinant(std::vector<double>& a, int64_t n) {
  double det = 1;
  for (int64_t k = 0; k < n; ++k) {
    int64_t pivot = k;
    for (int64_t r = k + 1; r < n; ++r)
      if (std::abs(a[r * n + k]) > std::abs(a[pivot * n + k])) pivot = r;
    if (a[pivot * n + k] == 0) return 0;
    if (pivot != k) {
      for (int64_t c = 0; c < n; ++c) std::swap(a[k * n + c], a[pivot * n + c]);
      det = -det;
    }
    det *= a[k * n + k];
    for (int64_t r = k + 1; r < n; ++r) {
      const double f = a[r * n + k] / a[k * n + k];
      for (int64_t c = k + 1; c < n; ++c) a[r * n + c] -= f * a[k * n + c];
    }
  }
  return det;
}

Status det(std::span<const Tensor* const> in, std::span<Tensor> out) {
  NNC_RETURN_IF_ERROR(requireInput(in, 0, "Det X"));
  const Tensor& x = *in[0];
  NNC_RETURN_IF_ERROR(requireDType(x, DType::kFloat32, "Det X"));
  if (x.rank() < 2 || x.dim(x.rank() - 1) != x.dim(x.rank() - 2))
    return invalidModel("Det: X must be [*, M, M], got " + shapeToString(x.shape()));
  const int64_t n = x.dim(x.rank() - 1);
  Tensor y(DType::kFloat32, Shape(x.shape().begin(), x.shape().end() - 2));
  const float* xd = x.data<float>().data();
  float* yd = y.mutableData<float>().data();
  std::vector<double> a(n * n);
  for (int64_t b = 0; b < y.numel(); ++b) {
    for (int64_t i = 0; i < n * n; ++i) a[i] = xd[b * n * n + i];
    yd[b] = static_cast<float>(determinant(a, n));
  }
  out[0] = std::move(y);
  return Status::ok();
}

}  // namespace

void registerLinalgKernels(KernelRegistry& r) {
  r.addFunction("Det", [](const KernelBuildContext& b) -> StatusOr<KernelFn> {
    // Det-22 only widens the types, but this kernel follows the version 11 spec it was checked
    // against.
    NNC_RETURN_IF_ERROR(requireOpVersion("Det", b.opset, 11, 22));
    return KernelFn([](std::span<const Tensor* const> in, std::span<Tensor> out,
                       const RunContext&) { return det(in, out); });
  });
}

}  // namespace nnc::exec
