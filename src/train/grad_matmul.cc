// Gemm and MatMul backward.
//   Gemm:   Y = alpha * A' B' + beta * C      (A' = A or A^T, B' = B or B^T)
//           dA' = alpha dY B'^T, dB' = alpha A'^T dY, dC = beta * dY summed to C's shape
//   MatMul: Y[b] = A[b] B[b] (batch axes broadcast, 1-D operands promoted)
//           dA[b] += dY[b] B[b]^T, dB[b] += A[b]^T dY[b], summed over broadcast batch axes

#include <algorithm>
#include <vector>

#include "backward.h"
#include "gemm.h"
#include "kernel_util.h"

namespace nnc::train {
namespace {

// C = A * B (row-major, optional transposes); C has ldc = n. Split by columns over the threads
// when big.
void gemm(int64_t m, int64_t n, int64_t k, const float* a, bool ta, const float* b, bool tb,
          float* c, const exec::RunContext& ctx) {
  exec::GemmArgs g;
  g.m = m, g.n = n, g.k = k;
  g.a = a, g.lda = ta ? m : k, g.trans_a = ta;
  g.b = b, g.ldb = tb ? k : n, g.trans_b = tb;
  g.c = c, g.ldc = n;
  g.threads = 1;
  const int threads = ctx.num_threads;
  if (threads <= 1 || m * n * k < (int64_t{1} << 20) || n < 32 * threads) {
    exec::sgemm(g);
    return;
  }
  const int64_t chunk = ((n + threads - 1) / threads + 15) / 16 * 16;
  exec::parallelRun(threads, ctx, [&](int64_t t) {
    const int64_t j0 = std::min<int64_t>(n, t * chunk), j1 = std::min<int64_t>(n, j0 + chunk);
    if (j1 <= j0) return;
    exec::GemmArgs part = g;
    part.n = j1 - j0;
    part.b = tb ? b + j0 * g.ldb : b + j0;
    part.c = c + j0;
    exec::sgemm(part);
  });
}

Status gemmBackward(const BackwardContext& c, std::span<Tensor> grads) {
  const bool ta = c.node.intAttr("transA", 0) != 0, tb = c.node.intAttr("transB", 0) != 0;
  const float alpha = c.node.floatAttr("alpha", 1.f), beta = c.node.floatAttr("beta", 1.f);
  const Tensor& dy = *c.output_grads[0];
  const Shape &as = c.input_shapes[0], &bs = c.input_shapes[1];
  const int64_t m = dy.dim(0), n = dy.dim(1), k = ta ? as[0] : as[1];
  if (c.needs_grad[0]) {
    if (!c.inputs[1]) return internalError("Gemm B not available");
    Tensor da(DType::kFloat32, as);
    // A' = A: dA = dY B'^T [m,k]; A' = A^T: dA = B' dY^T [k,m]
    if (!ta)
      gemm(m, k, n, fdata(dy), false, fdata(*c.inputs[1]), !tb, fdata(da), c.ctx);
    else
      gemm(k, m, n, fdata(*c.inputs[1]), tb, fdata(dy), true, fdata(da), c.ctx);
    if (alpha != 1.f)
      for (float& v : da.mutableData<float>()) v *= alpha;
    grads[0] = std::move(da);
  }
  if (c.needs_grad[1]) {
    if (!c.inputs[0]) return internalError("Gemm A not kept");
    Tensor db(DType::kFloat32, bs);
    // B' = B: dB = A'^T dY [k,n]; B' = B^T: dB = dY^T A' [n,k]
    if (!tb)
      gemm(k, n, m, fdata(*c.inputs[0]), !ta, fdata(dy), false, fdata(db), c.ctx);
    else
      gemm(n, k, m, fdata(dy), true, fdata(*c.inputs[0]), ta, fdata(db), c.ctx);
    if (alpha != 1.f)
      for (float& v : db.mutableData<float>()) v *= alpha;
    grads[1] = std::move(db);
  }
  if (c.needs_grad.size() > 2 && c.needs_grad[2]) {
    const Shape& cs = c.input_shapes[2];
    Tensor dc = zeros(cs);
    const auto strides = exec::broadcastStrides(cs, {m, n});
    float* d = fdata(dc);
    const float* g = fdata(dy);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) d[i * strides[0] + j * strides[1]] += beta * g[i * n + j];
    grads[2] = std::move(dc);
  }
  return Status::ok();
}

Status matmulBackward(const BackwardContext& c, std::span<Tensor> grads) {
  Shape as = c.input_shapes[0], bs = c.input_shapes[1];
  if (as.size() == 1) as.insert(as.begin(), 1);
  if (bs.size() == 1) bs.push_back(1);
  const int64_t m = as[as.size() - 2], k = as.back(), n = bs.back();
  const Shape a_batch(as.begin(), as.end() - 2), b_batch(bs.begin(), bs.end() - 2);
  NNC_ASSIGN_OR_RETURN(Shape batch, exec::broadcastShapes(a_batch, b_batch));
  const auto a_strides = exec::broadcastStrides(a_batch, batch),
             b_strides = exec::broadcastStrides(b_batch, batch);
  const int64_t batches = shapeNumel(batch);
  const float* dy = fdata(*c.output_grads[0]);
  const bool want_a = c.needs_grad[0], want_b = c.needs_grad[1];
  if ((want_a && !c.inputs[1]) || (want_b && !c.inputs[0]))
    return internalError("MatMul operand not kept");
  Tensor da, db;
  if (want_a) da = zeros(c.input_shapes[0], &c.ctx);
  if (want_b) db = zeros(c.input_shapes[1], &c.ctx);
  std::vector<float> tmp(static_cast<size_t>(std::max(m * k, k * n)));
  for (int64_t bi = 0; bi < batches; ++bi) {
    int64_t ao = 0, bo = 0, rem = bi;
    for (size_t d = batch.size(); d-- > 0;) {
      const int64_t idx = rem % batch[d];
      rem /= batch[d];
      ao += idx * a_strides[d];
      bo += idx * b_strides[d];
    }
    const float* g = dy + bi * m * n;
    if (want_a) {
      gemm(m, k, n, g, false, fdata(*c.inputs[1]) + bo * k * n, true, tmp.data(), c.ctx);
      float* dst = fdata(da) + ao * m * k;
      for (int64_t i = 0; i < m * k; ++i) dst[i] += tmp[i];
    }
    if (want_b) {
      gemm(k, n, m, fdata(*c.inputs[0]) + ao * m * k, true, g, false, tmp.data(), c.ctx);
      float* dst = fdata(db) + bo * k * n;
      for (int64_t i = 0; i < k * n; ++i) dst[i] += tmp[i];
    }
  }
  if (want_a) grads[0] = std::move(da);
  if (want_b) grads[1] = std::move(db);
  return Status::ok();
}

}  // namespace

void registerMatMulBackward(BackwardRegistry& r) {
  r.add("Gemm", {gemmBackward, /*keep_inputs=*/0b011, 0});
  r.add("MatMul", {matmulBackward, 0b011, 0});
}

}  // namespace nnc::train
