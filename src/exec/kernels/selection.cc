// Data-dependent selections detectors and classifiers export around their heads:
//
//   TopK (1: attribute k; 10: input K; 11: largest, sorted, negative axis): the k largest (or
//     smallest) along an axis and their int64 indices, in order; equal values keep the lower
//     index first, as ONNX Runtime does (sorted = 0 is returned sorted too: any order is valid).
//   NonZero (9, 13): int64 [rank, count] coordinates of the non-zero elements, row-major.
//   GatherND (11; 12: batch_dims): slices of data at the index tuples in the last axis of
//     indices; output shape indices.shape[:-1] + data.shape[batch_dims + k:].

#include <algorithm>
#include <cstring>
#include <numeric>
#include <optional>

#include "kernel_util.h"
#include "kernels.h"
#include "tensor_util.h"

namespace nnc::exec {
namespace {

struct TopKSpec {
  int64_t axis = -1;
  bool largest = true;
  std::optional<int64_t> k;  // opset 1 attribute
};

template <typename T>
void topKRows(const Tensor& x, int axis, int64_t k, bool largest, Tensor& values, Tensor& indices) {
  const int64_t n = x.dim(axis);
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; ++d) outer *= x.dim(d);
  for (int d = axis + 1; d < x.rank(); ++d) inner *= x.dim(d);
  const T* xd = x.data<T>().data();
  T* vd = values.mutableData<T>().data();
  int64_t* id = indices.mutableData<int64_t>().data();
  std::vector<int64_t> order(n);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      const T* row = xd + o * n * inner + i;
      std::iota(order.begin(), order.end(), 0);
      auto before = [&](int64_t a, int64_t b) {
        const T va = row[a * inner], vb = row[b * inner];
        if (va != vb) return largest ? va > vb : va < vb;
        return a < b;
      };
      std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
      for (int64_t j = 0; j < k; ++j) {
        const int64_t at = (o * k + j) * inner + i;
        vd[at] = row[order[j] * inner];
        id[at] = order[j];
      }
    }
}

Status topK(std::span<const Tensor* const> in, std::span<Tensor> out, const TopKSpec& s) {
  NNC_RETURN_IF_ERROR(requireInput(in, 0, "TopK X"));
  const Tensor& x = *in[0];
  NNC_ASSIGN_OR_RETURN(const int axis, normaliseAxis(s.axis, x.rank()));
  int64_t k = s.k.value_or(0);
  if (!s.k) {
    NNC_RETURN_IF_ERROR(requireInput(in, 1, "TopK K"));
    if (in[1]->numel() != 1) return invalidModel("TopK: K must hold one value");
    k = in[1]->toInt64Vector()[0];
  }
  if (k < 0 || k > x.dim(axis))
    return invalidModel("TopK: k = " + std::to_string(k) + " for an axis of " +
                        std::to_string(x.dim(axis)));
  Shape shape = x.shape();
  shape[axis] = k;
  out[0] = Tensor(x.dtype(), shape);
  if (out.size() > 1) out[1] = Tensor(DType::kInt64, shape);
  Tensor indices = out.size() > 1 ? Tensor() : Tensor(DType::kInt64, shape);
  Tensor& idx = out.size() > 1 ? out[1] : indices;
  switch (x.dtype()) {
    case DType::kFloat32:
      return topKRows<float>(x, axis, k, s.largest, out[0], idx), Status::ok();
    case DType::kFloat64:
      return topKRows<double>(x, axis, k, s.largest, out[0], idx), Status::ok();
    case DType::kInt64:
      return topKRows<int64_t>(x, axis, k, s.largest, out[0], idx), Status::ok();
    case DType::kInt32:
      return topKRows<int32_t>(x, axis, k, s.largest, out[0], idx), Status::ok();
    case DType::kUInt8:
      return topKRows<uint8_t>(x, axis, k, s.largest, out[0], idx), Status::ok();
    default:
      return unsupported(std::string("TopK on ") + dtypeName(x.dtype()) + " tensors");
  }
}

Status nonZero(const Tensor& x, Tensor& out) {
  NNC_ASSIGN_OR_RETURN(const size_t es, movableElementSize(x.dtype(), "NonZero"));
  const char* bytes = x.bytes().data();
  const std::string zero(es, '\0');
  std::vector<int64_t> flat;
  for (int64_t i = 0; i < x.numel(); ++i) {
    // Float -0.0 has a set sign bit but is zero.
    const bool is_zero = std::memcmp(bytes + i * es, zero.data(), es) == 0 ||
                         ((x.dtype() == DType::kFloat32 || x.dtype() == DType::kFloat64) &&
                          x.elementAsDouble(i) == 0.0);
    if (!is_zero) flat.push_back(i);
  }
  const int64_t count = static_cast<int64_t>(flat.size());
  out = Tensor(DType::kInt64, {x.rank(), count});
  int64_t* od = out.mutableData<int64_t>().data();
  for (int64_t j = 0; j < count; ++j) {
    int64_t rest = flat[j];
    for (int d = x.rank() - 1; d >= 0; --d) {
      od[d * count + j] = rest % x.dim(d);
      rest /= x.dim(d);
    }
  }
  return Status::ok();
}

Status gatherND(const Tensor& data, const Tensor& indices, int64_t batch_dims, Tensor& out) {
  NNC_ASSIGN_OR_RETURN(const size_t es, movableElementSize(data.dtype(), "GatherND"));
  if (indices.rank() < 1 || batch_dims < 0 || batch_dims >= std::min(data.rank(), indices.rank()))
    return invalidModel("GatherND: batch_dims " + std::to_string(batch_dims) + " for data " +
                        shapeToString(data.shape()) + " and indices " +
                        shapeToString(indices.shape()));
  const int64_t k = indices.shape().back();
  if (k < 1 || batch_dims + k > data.rank())
    return invalidModel("GatherND: index tuples of " + std::to_string(k) + " into " +
                        shapeToString(data.shape()));
  int64_t batches = 1;
  for (int64_t d = 0; d < batch_dims; ++d) {
    if (data.dim(d) != indices.dim(d))
      return shapeMismatch("GatherND: batch dims of data and indices differ");
    batches *= data.dim(d);
  }
  Shape shape(indices.shape().begin(), indices.shape().end() - 1);
  shape.insert(shape.end(), data.shape().begin() + batch_dims + k, data.shape().end());
  const int64_t slice =
      shapeNumel(Shape(data.shape().begin() + batch_dims + k, data.shape().end()));
  std::vector<int64_t> strides(k, slice);
  for (int64_t d = k - 1; d > 0; --d) strides[d - 1] = strides[d] * data.dim(batch_dims + d);
  const int64_t per_batch_data =
      shapeNumel(Shape(data.shape().begin() + batch_dims, data.shape().end()));
  const std::vector<int64_t> idx = readIndices(indices);
  const int64_t tuples = static_cast<int64_t>(idx.size()) / k, per_batch = tuples / batches;
  out = Tensor(data.dtype(), shape);
  char* dst = out.mutableBytes().data();
  const char* src = data.bytes().data();
  for (int64_t t = 0; t < tuples; ++t) {
    int64_t offset = (t / std::max<int64_t>(1, per_batch)) * per_batch_data;
    for (int64_t d = 0; d < k; ++d) {
      const int64_t dim = data.dim(static_cast<int>(batch_dims + d));
      int64_t i = idx[t * k + d];
      if (i < -dim || i >= dim)
        return invalidModel("GatherND: index " + std::to_string(i) + " out of range for a dim of " +
                            std::to_string(dim));
      offset += (i < 0 ? i + dim : i) * strides[d];
    }
    std::memcpy(dst + t * slice * es, src + offset * es, slice * es);
  }
  return Status::ok();
}

}  // namespace

void registerSelectionKernels(KernelRegistry& r) {
  r.addFunction("TopK", [](const KernelBuildContext& b) -> StatusOr<KernelFn> {
    TopKSpec s;
    s.axis = b.node.intAttr("axis", -1);
    s.largest = b.opset < 11 || b.node.intAttr("largest", 1) != 0;
    if (b.opset < 10) s.k = b.node.intAttr("k", 0);
    return KernelFn([s](std::span<const Tensor* const> in, std::span<Tensor> out,
                        const RunContext&) { return topK(in, out, s); });
  });
  r.addFunction("NonZero", [](const KernelBuildContext&) -> StatusOr<KernelFn> {
    return KernelFn(
        [](std::span<const Tensor* const> in, std::span<Tensor> out, const RunContext&) -> Status {
          NNC_RETURN_IF_ERROR(requireInput(in, 0, "NonZero X"));
          return nonZero(*in[0], out[0]);
        });
  });
  r.addFunction("GatherND", [](const KernelBuildContext& b) -> StatusOr<KernelFn> {
    const int64_t batch_dims = b.opset >= 12 ? b.node.intAttr("batch_dims", 0) : 0;
    return KernelFn([batch_dims](std::span<const Tensor* const> in, std::span<Tensor> out,
                                 const RunContext&) -> Status {
      NNC_RETURN_IF_ERROR(requireInput(in, 0, "GatherND data"));
      NNC_RETURN_IF_ERROR(requireInput(in, 1, "GatherND indices"));
      return gatherND(*in[0], *in[1], batch_dims, out[0]);
    });
  });
}

}  // namespace nnc::exec
