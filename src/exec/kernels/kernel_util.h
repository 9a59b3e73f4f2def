#pragma once
// Shared helpers for kernels: argument checks, broadcasting, parallel loops.

#include <omp.h>

#include <string>
#include <type_traits>

#include "thread_pool.h"

#include "nncompress/exec/kernel.h"
#include "nncompress/ir/conv_geometry.h"

namespace nnc::exec {

// Fails unless input i is present (not omitted).
inline Status requireInput(std::span<const Tensor* const> in, size_t i, const char* what) {
  if (i >= in.size() || !in[i]) return invalidModel(std::string("missing input: ") + what);
  return Status::ok();
}

inline Status requireDType(const Tensor& t, DType dtype, const char* what) {
  if (t.dtype() != dtype)
    return unsupported(std::string(what) + " must be " + dtypeName(dtype) + ", got " +
                       dtypeName(t.dtype()));
  return Status::ok();
}

// Numpy-style broadcast of two shapes.
inline StatusOr<Shape> broadcastShapes(const Shape& a, const Shape& b) {
  const size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1)
      return shapeMismatch("cannot broadcast " + shapeToString(a) + " with " + shapeToString(b));
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// Strides (in elements) of `shape` read as if broadcast to `out` (0 along broadcast axes).
inline std::vector<int64_t> broadcastStrides(const Shape& shape, const Shape& out) {
  std::vector<int64_t> strides(out.size(), 0);
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    const size_t o = i + (out.size() - shape.size());
    strides[o] = shape[i] == 1 ? 0 : stride;
    stride *= shape[i];
  }
  return strides;
}

// Runs fn(i) for i in [0, n) on the run's threads: the executor's blocking worker pool when
// there is one, else OpenMP.
template <typename Fn>
void parallelRun(int64_t n, const RunContext& ctx, Fn&& fn) {
  using F = std::remove_reference_t<Fn>;
  if (ctx.workers) {
    ctx.workers->run(
        n, [](void* f, int64_t i) { (*static_cast<F*>(f))(i); },
        const_cast<void*>(static_cast<const void*>(&fn)));
    return;
  }
#pragma omp parallel for num_threads(ctx.num_threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) fn(i);
}

// Splits [0, n) over the run's threads when the work is big enough to pay for the fork/join
// (which costs far more than the work of a small op when other processes share the cores).
template <typename Fn>
void parallelFor(int64_t n, const RunContext& ctx, int64_t work_per_item, Fn&& fn) {
  const bool parallel = ctx.num_threads > 1 && n > 1 && n * work_per_item > (1 << 18);
  if (!parallel) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  parallelRun(n, ctx, fn);
}

// Fails unless the version of `op` in effect at the model's `opset` is one the kernel implements:
// the op exists from version `first`, and `unimplemented` (0: none) is the first later version
// whose spec the kernel does not follow. A model without a default-domain import (opset <= 0)
// gets the latest implemented version.
inline Status requireOpVersion(const char* op, int64_t opset, int64_t first,
                               int64_t unimplemented = 0) {
  if (opset > 0 && opset < first)
    return invalidModel(std::string(op) + " does not exist before opset " + std::to_string(first));
  if (unimplemented > 0 && opset >= unimplemented)
    return unsupported(std::string(op) + "-" + std::to_string(unimplemented) +
                       " (opset >= " + std::to_string(unimplemented) + ") is not implemented");
  return Status::ok();
}

// Normalises a possibly negative axis; fails when out of range.
inline StatusOr<int> normaliseAxis(int64_t axis, int rank) {
  if (axis < -rank || axis >= rank)
    return invalidModel("axis " + std::to_string(axis) + " out of range for rank " +
                        std::to_string(rank));
  return static_cast<int>(axis < 0 ? axis + rank : axis);
}

// Forward conv (float and quantized) padding of one spatial axis of `rank`
// (ir/conv_geometry.h); returns the output size.
inline StatusOr<int64_t> convAxisPads(const ConvWindow& a, size_t axis, int64_t in, int64_t k,
                                      int64_t rank, int64_t& pad_begin, int64_t& pad_end) {
  NNC_ASSIGN_OR_RETURN(const AxisGeometry g, convAxis(a, axis, rank, in, k));
  pad_begin = g.pad_begin;
  pad_end = g.pad_end;
  return g.out;
}

}  // namespace nnc::exec
