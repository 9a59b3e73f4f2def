// Conv gradients with bf16 products (TapeOptions::bf16_conv_grads, exec/kernels/
// conv_grad_bf16.h): on single-Conv graphs of odd shapes (channel counts off the 4x6 tile, pads
// on some sides only, dilation, strides with their phase planes, groups, depthwise, 1-D, several
// sample chunks a thread), dW and dX equal double-precision sums of the bf16-rounded products (X
// and dY; dY and W), so the kernels' layouts and offsets are right, and stay within bf16's
// rounding of the float32 tape's. dX of strided and depthwise Convs stays float32, bit for bit,
// and so does dB.

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "graph_input.h"
#include "nncompress/train/tape.h"
#include "random_tensor.h"
#include "tensor_diff.h"

namespace nnc::train {
namespace {

using testing::maxAbsDiff;

struct ConvCase {
  std::string name;
  Shape x, w;  // x [n, c, (h,) w], w [m, c/group, (kh,) kw]
  std::vector<int64_t> strides, pads, dilations;
  int64_t group = 1;
};

Model convModel(const ConvCase& c, std::mt19937& rng) {
  Model m;
  m.opset_imports = {{"", 13}};
  Graph& g = *m.graph;
  Value* x = testing::addFloatInput(g);
  Value* w = g.addInitializer("w", testing::randomTensor(c.w, rng));
  Value* b = g.addInitializer("b", testing::randomTensor({c.w[0]}, rng));
  Node* conv = g.addNode("Conv", {x, w, b}, {"y"});
  conv->setAttribute(Attribute::makeInts("strides", c.strides));
  conv->setAttribute(Attribute::makeInts("pads", c.pads));
  conv->setAttribute(Attribute::makeInts("dilations", c.dilations));
  conv->setAttribute(Attribute::makeInt("group", c.group));
  g.addOutput(conv->output(0));
  return m;
}

float bf16(float f) {  // round to nearest even, as VCVTNEPS2BF16 (no NaN here)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000u;
  std::memcpy(&f, &u, 4);
  return f;
}

// Sums in double of bf16-rounded products, and per element the sum of their magnitudes (the
// float32 summation's error bound is relative to it).
struct Reference {
  std::vector<double> sum, scale;
  void add(size_t k, double p) { sum[k] += p, scale[k] += std::abs(p); }
};

// dW from bf16-rounded X and dY, dX from bf16-rounded dY and W.
void referenceGrads(const ConvCase& c, const Tensor& x, const Tensor& w, const Tensor& dy,
                    Reference& dw_ref, Reference& dx_ref) {
  const bool two_d = c.x.size() == 4;
  const int64_t n = c.x[0], cin = c.x[1], ih = two_d ? c.x[2] : 1, iw = c.x.back();
  const int64_t m = c.w[0], cg = c.w[1], kh = two_d ? c.w[2] : 1, kw = c.w.back();
  const int64_t oh = two_d ? dy.dim(2) : 1, ow = dy.shape().back(), mg = m / c.group;
  const int64_t sh = two_d ? c.strides[0] : 1, sw = c.strides.back();
  const int64_t dh = two_d ? c.dilations[0] : 1, dw = c.dilations.back();
  const int64_t pt = two_d ? c.pads[0] : 0, pl = two_d ? c.pads[1] : c.pads[0];
  dw_ref.sum.assign(static_cast<size_t>(m * cg * kh * kw), 0.0);
  dw_ref.scale = dw_ref.sum;
  dx_ref.sum.assign(static_cast<size_t>(x.numel()), 0.0);
  dx_ref.scale = dx_ref.sum;
  const float *xd = x.data<float>().data(), *dyd = dy.data<float>().data();
  const float* wd = w.data<float>().data();
  for (int64_t s = 0; s < n; ++s)
    for (int64_t oc = 0; oc < m; ++oc)
      for (int64_t ci = 0; ci < cg; ++ci)
        for (int64_t i = 0; i < kh; ++i)
          for (int64_t j = 0; j < kw; ++j)
            for (int64_t y = 0; y < oh; ++y)
              for (int64_t q = 0; q < ow; ++q) {
                const int64_t r = y * sh - pt + i * dh, col = q * sw - pl + j * dw;
                if (r < 0 || r >= ih || col < 0 || col >= iw) continue;
                const int64_t ch = (oc / mg) * cg + ci;
                const size_t xk = static_cast<size_t>(((s * cin + ch) * ih + r) * iw + col);
                const size_t wk = static_cast<size_t>(((oc * cg + ci) * kh + i) * kw + j);
                const double g = bf16(dyd[((s * m + oc) * oh + y) * ow + q]);
                dw_ref.add(wk, g * bf16(xd[xk]));
                dx_ref.add(xk, g * bf16(wd[wk]));
              }
}

// Worst error against the exact sums (relative to the magnitudes summed) and against the
// float32 tape (relative to its largest element).
void expectNear(const char* what, const Tensor& got, const Reference& ref, const Tensor& fp32) {
  SCOPED_TRACE(what);
  double worst_ref = 0, worst_fp32 = 0, norm = 0;
  for (size_t k = 0; k < ref.sum.size(); ++k) {
    const double v = got.data<float>()[k], f = fp32.data<float>()[k];
    worst_ref = std::max(worst_ref, std::abs(v - ref.sum[k]) / (ref.scale[k] + 1e-30));
    worst_fp32 = std::max(worst_fp32, std::abs(v - f));
    norm = std::max(norm, std::abs(f));
  }
  EXPECT_LT(worst_ref, 1e-6) << "differs from the bf16 products summed exactly";
  EXPECT_GT(worst_fp32, 0.0) << "bf16 path not taken";
  EXPECT_LT(worst_fp32, 1e-2 * norm) << "beyond bf16 rounding of the float32 gradient";
}

struct Grads {
  Tensor dw, db, dx;
};

Grads tapeGrads(const Model& model, const Tensor& x, const Tensor& dy, bool bf16_grads) {
  auto tape = GradientTape::create(
      model, {.num_threads = 2, .keep_activation_grads = {"x"}, .bf16_conv_grads = bf16_grads});
  EXPECT_TRUE(tape.isOk()) << tape.status().toString();
  GradientTape& t = *tape.value();
  auto y = t.forward({x});
  EXPECT_TRUE(y.isOk()) << y.status().toString();
  EXPECT_EQ(y.value()[0].shape(), dy.shape());
  t.zeroGrad();
  EXPECT_TRUE(t.backward({dy}).isOk());
  return {t.parameter("w")->grad, t.parameter("b")->grad, *t.activationGrad("x")};
}

void expectBf16Grads(const ConvCase& c, const Shape& y_shape) {
  SCOPED_TRACE(c.name);
  std::mt19937 rng(11);
  const Model model = convModel(c, rng);
  const Tensor x = testing::randomTensor(c.x, rng), dy = testing::randomTensor(y_shape, rng);
  const Grads fp32 = tapeGrads(model, x, dy, false), half = tapeGrads(model, x, dy, true);
  EXPECT_EQ(maxAbsDiff(half.db, fp32.db), 0.f);
  Reference dw_ref, dx_ref;
  const Tensor& w = *model.graph->findValue("w")->initializer();
  referenceGrads(c, x, w, dy, dw_ref, dx_ref);
  expectNear("dW", half.dw, dw_ref, fp32.dw);
  const bool strided = c.strides[0] != 1 || c.strides.back() != 1;
  if (strided || c.w[0] / c.group < 2)
    EXPECT_EQ(maxAbsDiff(half.dx, fp32.dx), 0.f);  // dX stays float32
  else
    expectNear("dX", half.dx, dx_ref, fp32.dx);
}

TEST(TrainBf16Grads, MatchExactBf16ProductsOnOddShapes) {
  if (!bf16ConvGradsAvailable()) GTEST_SKIP() << "CPU without AVX-512 BF16";
  const std::vector<std::pair<ConvCase, Shape>> cases = {
      {{"3x3 pads 1, 21 channels", {3, 5, 9, 7}, {21, 5, 3, 3}, {1, 1}, {1, 1, 1, 1}, {1, 1}},
       {3, 21, 9, 7}},
      {{"1x1 no pads", {2, 16, 8, 8}, {24, 16, 1, 1}, {1, 1}, {0, 0, 0, 0}, {1, 1}}, {2, 24, 8, 8}},
      {{"3x3 dilation 2", {2, 3, 11, 10}, {6, 3, 3, 3}, {1, 1}, {0, 0, 0, 0}, {2, 2}},
       {2, 6, 7, 6}},
      {{"2x3 pads on two sides", {2, 4, 6, 5}, {5, 4, 2, 3}, {1, 1}, {0, 2, 1, 0}, {1, 1}},
       {2, 5, 6, 5}},
      {{"groups 2", {2, 6, 7, 7}, {10, 3, 3, 3}, {1, 1}, {1, 1, 1, 1}, {1, 1}, 2}, {2, 10, 7, 7}},
      {{"depthwise", {2, 7, 6, 9}, {7, 1, 3, 3}, {1, 1}, {1, 1, 1, 1}, {1, 1}, 7}, {2, 7, 6, 9}},
      {{"1-D", {2, 5, 33}, {6, 5, 5}, {1}, {2, 2}, {1}}, {2, 6, 33}},
      {{"28x28, two chunks a thread", {24, 3, 28, 28}, {5, 3, 3, 3}, {1, 1}, {1, 1, 1, 1}, {1, 1}},
       {24, 5, 28, 28}},
      {{"stride 2", {2, 4, 9, 9}, {6, 4, 3, 3}, {2, 2}, {1, 1, 1, 1}, {1, 1}}, {2, 6, 5, 5}},
      {{"1x1 stride 2", {2, 24, 28, 28}, {48, 24, 1, 1}, {2, 2}, {0, 0, 0, 0}, {1, 1}},
       {2, 48, 14, 14}},
      {{"strides 2x3, dilation 2, pads on two sides",
        {2, 3, 12, 13},
        {5, 3, 3, 2},
        {2, 3},
        {2, 0, 0, 1},
        {2, 2}},
       {2, 5, 5, 4}},
      {{"stride 3 larger than the kernel",
        {2, 3, 10, 10},
        {4, 3, 2, 2},
        {3, 3},
        {0, 0, 0, 0},
        {1, 1}},
       {2, 4, 3, 3}},
      {{"1-D stride 2", {2, 5, 33}, {6, 5, 4}, {2}, {1, 2}, {1}}, {2, 6, 17}},
  };
  for (const auto& [c, y_shape] : cases) expectBf16Grads(c, y_shape);
}

}  // namespace
}  // namespace nnc::train
