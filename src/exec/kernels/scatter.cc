// ScatterND (11, 13, 16, 18): a copy of `data` with slices replaced (or combined, from 16) by
// `updates` at the positions `indices` name.
//
//   k = indices.shape[-1] <= rank(data); indices is a (q-1)-D array of k-tuples;
//   output[indices[i]] = updates[i]     (reduction none: the slice data.shape[k:] at that tuple)
//   output[indices[i]] op= updates[i]   (add, mul from 16; max, min from 18)
//
// Negative index entries count from the back of their axis. With reduction none, duplicate
// tuples are undefined in the spec; here the last one wins, as in the reference implementation.
// Torch exports it for Swin's shifted-window attention mask (slice assignment).
//
// ScatterElements (11, 13; reduction add/mul from 16, max/min from 18) and its predecessor
// Scatter (9): a copy of `data` where output[...index[i][j][k]... along `axis`...] = (op=)
// updates[i][j][k]; indices and updates share a shape, each index addresses one element.
// Torch exports it for scatter_ / index_put along one dim.

#include <algorithm>
#include <cstring>

#include "kernels.h"
#include "tensor_util.h"

namespace nnc::exec {
namespace {

enum class Reduction { kNone, kAdd, kMul, kMax, kMin };

StatusOr<Reduction> reductionOf(const Node& node, int64_t opset, const char* op = "ScatterND") {
  const std::string r = node.stringAttr("reduction", "none");
  if (r == "none") return Reduction::kNone;
  if (opset >= 16 && r == "add") return Reduction::kAdd;
  if (opset >= 16 && r == "mul") return Reduction::kMul;
  if (opset >= 18 && r == "max") return Reduction::kMax;
  if (opset >= 18 && r == "min") return Reduction::kMin;
  return invalidModel(std::string(op) + ": reduction '" + r + "' is not defined at opset " +
                      std::to_string(opset));
}

template <typename T>
void combine(T* dst, const T* src, int64_t count, Reduction r) {
  for (int64_t i = 0; i < count; ++i) {
    switch (r) {
      case Reduction::kAdd:
        dst[i] = dst[i] + src[i];
        break;
      case Reduction::kMul:
        dst[i] = dst[i] * src[i];
        break;
      case Reduction::kMax:
        dst[i] = std::max(dst[i], src[i]);
        break;
      case Reduction::kMin:
        dst[i] = std::min(dst[i], src[i]);
        break;
      case Reduction::kNone:
        dst[i] = src[i];
        break;
    }
  }
}

// Combines `count` elements at byte offsets; false for a dtype the reduction has no loop for.
bool combineBytes(DType dtype, char* dst, const char* src, int64_t count, Reduction r) {
  switch (dtype) {
    case DType::kFloat32:
      combine(reinterpret_cast<float*>(dst), reinterpret_cast<const float*>(src), count, r);
      return true;
    case DType::kFloat64:
      combine(reinterpret_cast<double*>(dst), reinterpret_cast<const double*>(src), count, r);
      return true;
    case DType::kInt64:
      combine(reinterpret_cast<int64_t*>(dst), reinterpret_cast<const int64_t*>(src), count, r);
      return true;
    case DType::kInt32:
      combine(reinterpret_cast<int32_t*>(dst), reinterpret_cast<const int32_t*>(src), count, r);
      return true;
    default:
      return false;
  }
}

// Checks the shapes the spec requires: updates.shape == indices.shape[:-1] + data.shape[k:].
Status checkScatterShapes(const Tensor& data, const Tensor& indices, const Tensor& updates) {
  if (data.rank() < 1 || indices.rank() < 1)
    return invalidModel("ScatterND: data and indices need rank >= 1");
  const int64_t k = indices.shape().back();
  if (k > data.rank()) return invalidModel("ScatterND: index tuples longer than the data rank");
  Shape want(indices.shape().begin(), indices.shape().end() - 1);
  want.insert(want.end(), data.shape().begin() + k, data.shape().end());
  if (updates.shape() != want)
    return shapeMismatch("ScatterND: updates " + shapeToString(updates.shape()) + ", expected " +
                         shapeToString(want));
  if (updates.dtype() != data.dtype())
    return invalidModel("ScatterND: updates and data differ in type");
  if (indices.dtype() != DType::kInt64 && indices.dtype() != DType::kInt32)
    return invalidModel("ScatterND: indices must be int64");
  return Status::ok();
}

Status scatterND(const Tensor& data, const Tensor& indices, const Tensor& updates, Reduction r,
                 Tensor& out) {
  NNC_RETURN_IF_ERROR(checkScatterShapes(data, indices, updates));
  NNC_ASSIGN_OR_RETURN(size_t es, movableElementSize(data.dtype(), "ScatterND"));
  const int64_t k = indices.shape().back();
  const int64_t slice = shapeNumel(Shape(data.shape().begin() + k, data.shape().end()));
  std::vector<int64_t> strides(k, slice);  // elements per step along each indexed axis
  for (int64_t d = k - 1; d > 0; --d) strides[d - 1] = strides[d] * data.dim(d);
  const std::vector<int64_t> idx = readIndices(indices);
  const int64_t tuples =
      k == 0 ? updates.numel() / std::max<int64_t>(slice, 1) : static_cast<int64_t>(idx.size()) / k;
  out = data;  // a copy: the output starts as data
  char* dst = out.mutableBytes().data();
  const char* src = updates.bytes().data();
  for (int64_t t = 0; t < tuples; ++t) {
    int64_t offset = 0;
    for (int64_t d = 0; d < k; ++d) {
      int64_t i = idx[t * k + d];
      const int64_t dim = data.dim(static_cast<int>(d));
      if (i < -dim || i >= dim)
        return invalidModel("ScatterND: index " + std::to_string(i) + " out of range for axis " +
                            std::to_string(d) + " of size " + std::to_string(dim));
      offset += (i < 0 ? i + dim : i) * strides[d];
    }
    char* at = dst + offset * es;
    const char* from = src + t * slice * es;
    if (r == Reduction::kNone) {
      std::memcpy(at, from, slice * es);
    } else if (!combineBytes(data.dtype(), at, from, slice, r)) {
      return unsupported(std::string("ScatterND reduction on ") + dtypeName(data.dtype()) +
                         " tensors");
    }
  }
  return Status::ok();
}

// The element offset in `data` that element `i` of `indices` addresses (its own coordinates with
// the one along `axis` replaced by the index).
StatusOr<int64_t> elementTarget(const Tensor& data, const Shape& ishape, int axis, int64_t i,
                                int64_t index) {
  const int64_t dim = data.dim(axis);
  if (index < -dim || index >= dim)
    return invalidModel("ScatterElements: index " + std::to_string(index) +
                        " out of range for an axis of " + std::to_string(dim));
  int64_t offset = 0, stride = 1, rest = i;
  for (int d = static_cast<int>(ishape.size()) - 1; d >= 0; --d) {
    const int64_t coord = d == axis ? (index < 0 ? index + dim : index) : rest % ishape[d];
    rest /= ishape[d];
    offset += coord * stride;
    stride *= data.dim(d);
  }
  return offset;
}

Status scatterElements(const Tensor& data, const Tensor& indices, const Tensor& updates,
                       int64_t axis_attr, Reduction r, Tensor& out) {
  NNC_ASSIGN_OR_RETURN(const int axis, normaliseAxis(axis_attr, data.rank()));
  if (indices.shape() != updates.shape() || indices.rank() != data.rank())
    return shapeMismatch("ScatterElements: indices " + shapeToString(indices.shape()) +
                         " and updates " + shapeToString(updates.shape()) +
                         " must share a shape of data's rank " + std::to_string(data.rank()));
  for (int d = 0; d < data.rank(); ++d)
    if (d != axis && indices.dim(d) > data.dim(d))
      return shapeMismatch("ScatterElements: indices larger than data off the axis");
  if (updates.dtype() != data.dtype())
    return invalidModel("ScatterElements: updates and data differ in type");
  NNC_ASSIGN_OR_RETURN(size_t es, movableElementSize(data.dtype(), "ScatterElements"));
  const std::vector<int64_t> idx = readIndices(indices);
  out = data;  // a copy: the output starts as data
  char* dst = out.mutableBytes().data();
  const char* src = updates.bytes().data();
  for (int64_t i = 0; i < static_cast<int64_t>(idx.size()); ++i) {
    NNC_ASSIGN_OR_RETURN(const int64_t at, elementTarget(data, indices.shape(), axis, i, idx[i]));
    if (r == Reduction::kNone)
      std::memcpy(dst + at * es, src + i * es, es);
    else if (!combineBytes(data.dtype(), dst + at * es, src + i * es, 1, r))
      return unsupported(std::string("ScatterElements reduction on ") + dtypeName(data.dtype()) +
                         " tensors");
  }
  return Status::ok();
}

KernelFactory scatterElementsFactory(const char* op) {
  return [op](const KernelBuildContext& b) -> StatusOr<std::unique_ptr<Kernel>> {
    NNC_ASSIGN_OR_RETURN(Reduction reduction, reductionOf(b.node, b.opset, op));
    const int64_t axis = b.node.intAttr("axis", 0);
    return makeFunctionKernel([reduction, axis](std::span<const Tensor* const> in,
                                                std::span<Tensor> out, const RunContext&) {
      if (in.size() < 3 || !in[0] || !in[1] || !in[2])
        return invalidModel("ScatterElements needs data, indices and updates");
      return scatterElements(*in[0], *in[1], *in[2], axis, reduction, out[0]);
    });
  };
}

}  // namespace

void registerScatterKernels(KernelRegistry& r) {
  r.add("ScatterElements", scatterElementsFactory("ScatterElements"));
  r.add("Scatter", scatterElementsFactory("Scatter"));
  r.addFunction("ScatterND", [](const KernelBuildContext& b) -> StatusOr<KernelFn> {
    NNC_ASSIGN_OR_RETURN(Reduction reduction, reductionOf(b.node, b.opset));
    return KernelFn([reduction](std::span<const Tensor* const> in, std::span<Tensor> out,
                                const RunContext&) -> Status {
      if (in.size() < 3 || !in[0] || !in[1] || !in[2])
        return invalidModel("ScatterND needs data, indices and updates");
      return scatterND(*in[0], *in[1], *in[2], reduction, out[0]);
    });
  });
}

}  // namespace nnc::exec
