// Gemm (Y = alpha * A' B' + beta * C) and MatMul (numpy semantics: batched, broadcast, 1-D
// operands promoted), both as Eigen GEMMs on row-major maps.

#include <Eigen/Core>
#include <algorithm>

#include "gemm.h"
#include "kernel_util.h"
#include "kernels.h"

namespace nnc::exec {
namespace {

using MatrixRM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapRM = Eigen::Map<MatrixRM>;
using ConstMapRM = Eigen::Map<const MatrixRM>;

// One GEMM, split by column blocks over the run's threads when it is big enough.
void gemmByColumns(GemmArgs g, const RunContext& ctx) {
  const int threads = ctx.num_threads;
  g.threads = 1;
  if (threads <= 1 || g.m * g.n * g.k < (int64_t{1} << 21) || g.n < 32 * threads) {
    sgemm(g);
    return;
  }
  const int64_t chunk = ((g.n + threads - 1) / threads + 15) / 16 * 16;
  parallelRun(threads, ctx, [&](int64_t t) {
    const int64_t j0 = std::min<int64_t>(g.n, t * chunk), j1 = std::min<int64_t>(g.n, j0 + chunk);
    if (j1 <= j0) return;
    GemmArgs part = g;
    part.n = j1 - j0;
    part.b = g.trans_b ? g.b + j0 * g.ldb : g.b + j0;
    part.c = g.c + j0;
    sgemm(part);
  });
}

StatusOr<KernelFn> makeGemm(const KernelBuildContext& b) {
  const bool trans_a = b.node.intAttr("transA", 0) != 0;
  const bool trans_b = b.node.intAttr("transB", 0) != 0;
  const float alpha = b.node.floatAttr("alpha", 1.f);
  const float beta = b.node.floatAttr("beta", 1.f);
  return KernelFn([=](std::span<const Tensor* const> in, std::span<Tensor> out,
                      const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "A"));
    NNC_RETURN_IF_ERROR(requireInput(in, 1, "B"));
    const Tensor& a = *in[0];
    const Tensor& bt = *in[1];
    NNC_RETURN_IF_ERROR(requireDType(a, DType::kFloat32, "Gemm A"));
    NNC_RETURN_IF_ERROR(requireDType(bt, DType::kFloat32, "Gemm B"));
    if (a.rank() != 2 || bt.rank() != 2) return shapeMismatch("Gemm operands must be 2-D");
    const int64_t m = trans_a ? a.dim(1) : a.dim(0), k = trans_a ? a.dim(0) : a.dim(1);
    const int64_t kb = trans_b ? bt.dim(1) : bt.dim(0), n = trans_b ? bt.dim(0) : bt.dim(1);
    if (k != kb)
      return shapeMismatch("Gemm inner dimensions differ: " + shapeToString(a.shape()) + " and " +
                           shapeToString(bt.shape()));
    Tensor y = ctx.newTensor(DType::kFloat32, {m, n});  // fully written by the GEMM
    GemmArgs g;
    g.m = m, g.n = n, g.k = k;
    g.a = a.data<float>().data(), g.lda = a.dim(1), g.trans_a = trans_a;
    g.b = bt.data<float>().data(), g.ldb = bt.dim(1), g.trans_b = trans_b;
    g.c = y.mutableData<float>().data(), g.ldc = n;
    gemmByColumns(g, ctx);
    MapRM ym(y.mutableData<float>().data(), m, n);
    if (alpha != 1.f) ym *= alpha;
    const Tensor* c = in.size() > 2 ? in[2] : nullptr;
    if (c && beta != 0.f) {
      NNC_RETURN_IF_ERROR(requireDType(*c, DType::kFloat32, "Gemm C"));
      NNC_ASSIGN_OR_RETURN(Shape bs, broadcastShapes(c->shape(), {m, n}));
      if (bs != Shape{m, n})
        return shapeMismatch("Gemm C " + shapeToString(c->shape()) +
                             " does not broadcast to the output");
      const auto strides = broadcastStrides(c->shape(), {m, n});
      const float* cd = c->data<float>().data();
      float* yd = y.mutableData<float>().data();
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) yd[i * n + j] += beta * cd[i * strides[0] + j * strides[1]];
    }
    out[0] = std::move(y);
    return Status::ok();
  });
}

Status matmul(std::span<const Tensor* const> in, std::span<Tensor> out, const RunContext& ctx) {
  NNC_RETURN_IF_ERROR(requireInput(in, 0, "A"));
  NNC_RETURN_IF_ERROR(requireInput(in, 1, "B"));
  const Tensor& a = *in[0];
  const Tensor& b = *in[1];
  NNC_RETURN_IF_ERROR(requireDType(a, DType::kFloat32, "MatMul A"));
  NNC_RETURN_IF_ERROR(requireDType(b, DType::kFloat32, "MatMul B"));
  if (a.rank() == 0 || b.rank() == 0) return shapeMismatch("MatMul operands must not be scalars");
  // Promote 1-D operands: A [K] -> [1, K], B [K] -> [K, 1]; the added axis is dropped after.
  Shape as = a.shape(), bs = b.shape();
  if (as.size() == 1) as.insert(as.begin(), 1);
  if (bs.size() == 1) bs.push_back(1);
  const int64_t m = as[as.size() - 2], k = as.back(), kb = bs[bs.size() - 2], n = bs.back();
  if (k != kb)
    return shapeMismatch("MatMul inner dimensions differ: " + shapeToString(a.shape()) + " and " +
                         shapeToString(b.shape()));
  const Shape a_batch(as.begin(), as.end() - 2), b_batch(bs.begin(), bs.end() - 2);
  NNC_ASSIGN_OR_RETURN(Shape batch, broadcastShapes(a_batch, b_batch));
  const auto a_strides = broadcastStrides(a_batch, batch),
             b_strides = broadcastStrides(b_batch, batch);
  const int64_t batches = shapeNumel(batch);
  Shape out_shape = batch;
  if (a.rank() > 1) out_shape.push_back(m);
  if (b.rank() > 1) out_shape.push_back(n);
  Tensor y = ctx.newTensor(DType::kFloat32, out_shape);  // fully written by the GEMMs
  const float* ad = a.data<float>().data();
  const float* bd = b.data<float>().data();
  float* yd = y.mutableData<float>().data();
  const bool per_batch_threads =
      ctx.num_threads > 1 && batches >= ctx.num_threads && batches * m * n * k >= (1 << 21);
  auto one = [&](int64_t bi) {
    int64_t ao = 0, bo = 0, rem = bi;
    for (size_t d = batch.size(); d-- > 0;) {
      const int64_t idx = rem % batch[d];
      rem /= batch[d];
      ao += idx * a_strides[d];
      bo += idx * b_strides[d];
    }
    GemmArgs g;
    g.m = m, g.n = n, g.k = k;
    g.a = ad + ao * m * k, g.lda = k;
    g.b = bd + bo * k * n, g.ldb = n;
    g.c = yd + bi * m * n, g.ldc = n;
    if (per_batch_threads) {
      sgemm(g);
    } else {
      gemmByColumns(g, ctx);
    }
  };
  if (per_batch_threads) {
    parallelRun(batches, ctx, one);
  } else {
    for (int64_t bi = 0; bi < batches; ++bi) one(bi);
  }
  out[0] = std::move(y);
  return Status::ok();
}

}  // namespace

void registerMatMulKernels(KernelRegistry& r) {
  r.addFunction("Gemm", makeGemm);
  r.addFunction("MatMul",
                [](const KernelBuildContext&) -> StatusOr<KernelFn> { return KernelFn(matmul); });
}

}  // namespace nnc::exec
