// Ops that scan, select or re-order along one axis, as sequence models and heads export them:
//
//   CumSum (11, 14): running sums along `axis` (a one-element int32/int64 tensor); exclusive
//     leaves the element itself out, reverse sums from the end. Integers wrap on overflow.
//   OneHot (9, 11): output[..., d, ...] = values[1] where indices == d along the new axis, else
//     values[0]. From 11 an index in [-depth, -1] counts from the back; at 9 it is off, like any
//     index outside [0, depth). Non-integer indices and depth are truncated to int64.
//   Compress (9, 11): the slices along `axis` (or the elements of the flattened input) whose
//     condition entry is true; entries past the end of the axis are ignored, a condition
//     shorter than the axis drops the rest (numpy.compress). Negative axis from 11.
//   ReverseSequence (10): per batch entry b, the first sequence_lens[b] steps along the time axis
//     reversed, the rest copied; time and batch axes are 0 and 1 in either order.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

#include "kernel_util.h"
#include "kernels.h"
#include "tensor_util.h"

namespace nnc::exec {
namespace {

// ---- CumSum ----

// Integer sums wrap (as in ONNX Runtime) instead of overflowing, which C++ leaves undefined.
template <typename T>
T wrappingAdd(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));
  } else {
    return a + b;
  }
}

template <typename T>
void cumSumRows(const Tensor& x, int axis, bool exclusive, bool reverse, Tensor& y) {
  const int64_t n = x.dim(axis);
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; ++d) outer *= x.dim(d);
  for (int d = axis + 1; d < x.rank(); ++d) inner *= x.dim(d);
  const T* xd = x.data<T>().data();
  T* yd = y.mutableData<T>().data();
  std::vector<T> sum(inner);
  for (int64_t o = 0; o < outer; ++o) {
    std::fill(sum.begin(), sum.end(), T(0));
    for (int64_t step = 0; step < n; ++step) {
      const int64_t row = (o * n + (reverse ? n - 1 - step : step)) * inner;
      for (int64_t i = 0; i < inner; ++i) {
        if (exclusive) yd[row + i] = sum[i];
        sum[i] = wrappingAdd(sum[i], xd[row + i]);
        if (!exclusive) yd[row + i] = sum[i];
      }
    }
  }
}

Status cumSum(std::span<const Tensor* const> in, std::span<Tensor> out, bool exclusive,
              bool reverse) {
  NNC_RETURN_IF_ERROR(requireInput(in, 0, "CumSum x"));
  NNC_RETURN_IF_ERROR(requireInput(in, 1, "CumSum axis"));
  const Tensor &x = *in[0], &axis_t = *in[1];
  if ((axis_t.dtype() != DType::kInt32 && axis_t.dtype() != DType::kInt64) || axis_t.numel() != 1 ||
      axis_t.rank() > 1)
    return invalidModel("CumSum: axis must be a 0-D or one-element 1-D int32/int64 tensor, got " +
                        std::string(dtypeName(axis_t.dtype())) + " " +
                        shapeToString(axis_t.shape()));
  NNC_ASSIGN_OR_RETURN(const int axis, normaliseAxis(readIndices(axis_t)[0], x.rank()));
  out[0] = Tensor(x.dtype(), x.shape());
  switch (x.dtype()) {
    case DType::kFloat32:
      return cumSumRows<float>(x, axis, exclusive, reverse, out[0]), Status::ok();
    case DType::kFloat64:
      return cumSumRows<double>(x, axis, exclusive, reverse, out[0]), Status::ok();
    case DType::kInt32:
      return cumSumRows<int32_t>(x, axis, exclusive, reverse, out[0]), Status::ok();
    case DType::kInt64:
      return cumSumRows<int64_t>(x, axis, exclusive, reverse, out[0]), Status::ok();
    default:
      return unsupported(std::string("CumSum on ") + dtypeName(x.dtype()) + " tensors");
  }
}

// ---- OneHot ----

// A float index or depth truncated to int64; NaN and values out of the int64 range give `bad`.
int64_t truncatedToInt64(double v, int64_t bad) {
  return std::isfinite(v) && std::abs(v) < 9.2e18 ? static_cast<int64_t>(v) : bad;
}

std::vector<int64_t> indexValues(const Tensor& t) {
  if (t.dtype() != DType::kFloat32 && t.dtype() != DType::kFloat64 &&
      t.dtype() != DType::kFloat16 && t.dtype() != DType::kBFloat16)
    return readIndices(t);
  std::vector<int64_t> v(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i)
    v[i] = truncatedToInt64(t.elementAsDouble(i), std::numeric_limits<int64_t>::min());
  return v;
}

struct OneHotSpec {
  int64_t axis = -1;
  bool wrap_negative = true;  // opset 11
};

Status oneHot(std::span<const Tensor* const> in, std::span<Tensor> out, const OneHotSpec& s) {
  NNC_RETURN_IF_ERROR(requireInput(in, 0, "OneHot indices"));
  NNC_RETURN_IF_ERROR(requireInput(in, 1, "OneHot depth"));
  NNC_RETURN_IF_ERROR(requireInput(in, 2, "OneHot values"));
  const Tensor &indices = *in[0], &depth_t = *in[1], &values = *in[2];
  if (depth_t.numel() != 1 || depth_t.rank() > 1)
    return invalidModel("OneHot: depth must be a scalar or a one-element tensor, got " +
                        shapeToString(depth_t.shape()));
  if (dtypeBits(depth_t.dtype()) <= 0 || depth_t.dtype() == DType::kString)
    return invalidModel(std::string("OneHot: depth of type ") + dtypeName(depth_t.dtype()));
  const int64_t depth = indexValues(depth_t)[0];
  if (depth < 0 || depth > (int64_t{1} << 40))
    return invalidModel("OneHot: depth " + std::to_string(depth) + " out of range");
  if (values.rank() != 1 || values.numel() != 2)
    return invalidModel("OneHot: values must hold [off_value, on_value], got " +
                        shapeToString(values.shape()));
  NNC_ASSIGN_OR_RETURN(const size_t es, movableElementSize(values.dtype(), "OneHot"));
  const int r = indices.rank();
  if (s.axis < -r - 1 || s.axis > r)
    return invalidModel("OneHot: axis " + std::to_string(s.axis) + " out of range for indices " +
                        "of rank " + std::to_string(r));
  const int axis = static_cast<int>(s.axis < 0 ? s.axis + r + 1 : s.axis);
  Shape shape = indices.shape();
  shape.insert(shape.begin() + axis, depth);
  int64_t inner = 1;  // index elements after the new axis
  for (int d = axis; d < r; ++d) inner *= indices.dim(d);
  Tensor y(values.dtype(), shape);
  char* yd = y.mutableBytes().data();
  const char* off = values.bytes().data();
  const char* on = off + es;
  fillElements(yd, y.numel(), off, es);
  const std::vector<int64_t> idx = indexValues(indices);
  for (int64_t i = 0; i < static_cast<int64_t>(idx.size()); ++i) {
    int64_t k = idx[i];
    if (k < 0 && s.wrap_negative && k >= -depth) k += depth;
    if (k < 0 || k >= depth) continue;
    const int64_t o = i / std::max<int64_t>(inner, 1), j = i % std::max<int64_t>(inner, 1);
    std::memcpy(yd + ((o * depth + k) * inner + j) * es, on, es);
  }
  out[0] = std::move(y);
  return Status::ok();
}

// ---- Compress ----

Status compress(std::span<const Tensor* const> in, std::span<Tensor> out,
                std::optional<int64_t> axis_attr, bool negative_axis) {
  NNC_RETURN_IF_ERROR(requireInput(in, 0, "Compress input"));
  NNC_RETURN_IF_ERROR(requireInput(in, 1, "Compress condition"));
  const Tensor &x = *in[0], &cond = *in[1];
  NNC_RETURN_IF_ERROR(requireDType(cond, DType::kBool, "Compress condition"));
  if (cond.rank() != 1)
    return invalidModel("Compress: condition must be 1-D, got " + shapeToString(cond.shape()));
  if (x.rank() < 1) return invalidModel("Compress: input must have rank >= 1");
  NNC_ASSIGN_OR_RETURN(const size_t es, movableElementSize(x.dtype(), "Compress"));
  if (axis_attr && *axis_attr < 0 && !negative_axis)
    return invalidModel("Compress: negative axis before opset 11");
  int axis = 0;
  if (axis_attr) {
    NNC_ASSIGN_OR_RETURN(axis, normaliseAxis(*axis_attr, x.rank()));
  }
  // Without an axis: the flattened input, one element per slice.
  const int64_t extent = axis_attr ? x.dim(axis) : x.numel();
  int64_t outer = 1, slice = 1;
  if (axis_attr) {
    for (int d = 0; d < axis; ++d) outer *= x.dim(d);
    for (int d = axis + 1; d < x.rank(); ++d) slice *= x.dim(d);
  }
  const char* keep = cond.bytes().data();  // one byte per bool
  std::vector<int64_t> kept;
  for (int64_t i = 0; i < std::min<int64_t>(extent, cond.numel()); ++i)
    if (keep[i]) kept.push_back(i);
  const int64_t count = static_cast<int64_t>(kept.size());
  Shape shape = axis_attr ? x.shape() : Shape{count};
  if (axis_attr) shape[axis] = count;
  Tensor y(x.dtype(), shape);
  const char* src = x.bytes().data();
  char* dst = y.mutableBytes().data();
  const size_t slice_bytes = static_cast<size_t>(slice) * es;
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < count; ++j)
      std::memcpy(dst + (o * count + j) * slice_bytes, src + (o * extent + kept[j]) * slice_bytes,
                  slice_bytes);
  out[0] = std::move(y);
  return Status::ok();
}

// ---- ReverseSequence ----

Status reverseSequence(std::span<const Tensor* const> in, std::span<Tensor> out, int time_axis,
                       int batch_axis) {
  NNC_RETURN_IF_ERROR(requireInput(in, 0, "ReverseSequence input"));
  NNC_RETURN_IF_ERROR(requireInput(in, 1, "ReverseSequence sequence_lens"));
  const Tensor &x = *in[0], &lens_t = *in[1];
  if (x.rank() < 2) return invalidModel("ReverseSequence: input must have rank >= 2");
  NNC_ASSIGN_OR_RETURN(const size_t es, movableElementSize(x.dtype(), "ReverseSequence"));
  const int64_t steps = x.dim(time_axis), batch = x.dim(batch_axis);
  if (lens_t.dtype() != DType::kInt64 || lens_t.rank() != 1 || lens_t.numel() != batch)
    return invalidModel("ReverseSequence: sequence_lens must be int64 of shape [" +
                        std::to_string(batch) + "], got " + dtypeName(lens_t.dtype()) + " " +
                        shapeToString(lens_t.shape()));
  const auto lens = lens_t.data<int64_t>();
  for (int64_t len : lens)
    if (len < 0 || len > steps)
      return invalidModel("ReverseSequence: sequence length " + std::to_string(len) +
                          " outside [0, " + std::to_string(steps) + "]");
  const int64_t inner = x.numel() / std::max<int64_t>(1, steps * batch);
  const size_t inner_bytes = static_cast<size_t>(inner) * es;
  auto at = [&](int64_t t, int64_t b) {  // byte offset of step t of batch entry b
    const int64_t row = time_axis == 0 ? t * batch + b : b * steps + t;
    return static_cast<size_t>(row) * inner_bytes;
  };
  out[0] = x;  // steps past each length stay as they are
  char* dst = out[0].mutableBytes().data();
  const char* src = x.bytes().data();
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < lens[b]; ++t)
      std::memcpy(dst + at(t, b), src + at(lens[b] - 1 - t, b), inner_bytes);
  return Status::ok();
}

}  // namespace

void registerSequenceKernels(KernelRegistry& r) {
  r.addFunction("CumSum", [](const KernelBuildContext& b) -> StatusOr<KernelFn> {
    NNC_RETURN_IF_ERROR(requireOpVersion("CumSum", b.opset, 11));
    const bool exclusive = b.node.intAttr("exclusive", 0) != 0;
    const bool reverse = b.node.intAttr("reverse", 0) != 0;
    return KernelFn([=](std::span<const Tensor* const> in, std::span<Tensor> out,
                        const RunContext&) { return cumSum(in, out, exclusive, reverse); });
  });
  r.addFunction("OneHot", [](const KernelBuildContext& b) -> StatusOr<KernelFn> {
    NNC_RETURN_IF_ERROR(requireOpVersion("OneHot", b.opset, 9));
    OneHotSpec s;
    s.axis = b.node.intAttr("axis", -1);
    s.wrap_negative = b.opset <= 0 || b.opset >= 11;
    return KernelFn([s](std::span<const Tensor* const> in, std::span<Tensor> out,
                        const RunContext&) { return oneHot(in, out, s); });
  });
  r.addFunction("Compress", [](const KernelBuildContext& b) -> StatusOr<KernelFn> {
    NNC_RETURN_IF_ERROR(requireOpVersion("Compress", b.opset, 9));
    std::optional<int64_t> axis;
    if (b.node.hasAttribute("axis")) axis = b.node.intAttr("axis", 0);
    const bool negative_axis = b.opset <= 0 || b.opset >= 11;
    return KernelFn([=](std::span<const Tensor* const> in, std::span<Tensor> out,
                        const RunContext&) { return compress(in, out, axis, negative_axis); });
  });
  r.addFunction("ReverseSequence", [](const KernelBuildContext& b) -> StatusOr<KernelFn> {
    NNC_RETURN_IF_ERROR(requireOpVersion("ReverseSequence", b.opset, 10));
    const int64_t time_axis = b.node.intAttr("time_axis", 0);
    const int64_t batch_axis = b.node.intAttr("batch_axis", 1);
    if ((time_axis != 0 && time_axis != 1) || batch_axis + time_axis != 1)
      return invalidModel("ReverseSequence: time_axis and batch_axis must be 0 and 1, got " +
                          std::to_string(time_axis) + " and " + std::to_string(batch_axis));
    return KernelFn([=](std::span<const Tensor* const> in, std::span<Tensor> out,
                        const RunContext&) {
      return reverseSequence(in, out, static_cast<int>(time_axis), static_cast<int>(batch_axis));
    });
  });
}

}  // namespace nnc::exec
