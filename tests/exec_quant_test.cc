// Quantization kernels (src/exec/kernels/quant.cc) run through the Executor on one-node models:
// QuantizeLinear / DequantizeLinear rounding, per-axis, blocked and 4-bit layouts;
// DynamicQuantizeLinear; QLinearConv / ConvInteger / QLinearMatMul / MatMulInteger against naive
// int64 references on random data (bit-exact), constant (pre-packed) and fed weights, 1 and 2
// threads, and values large enough to need the double GEMM path and int32 wrap-around.

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <random>

#include "nncompress/exec/executor.h"

namespace nnc {
namespace {

// One node input: fed at run time, a constant (initializer), or omitted.
struct Arg {
  std::optional<Tensor> tensor;
  bool constant = false;
  static Arg feed(Tensor t) { return {std::move(t), false}; }
  static Arg constant_(Tensor t) { return {std::move(t), true}; }
  static Arg none() { return {}; }
};

StatusOr<std::vector<Tensor>> runOp(const std::string& op, std::vector<Arg> args,
                                    std::vector<Attribute> attrs = {}, int num_outputs = 1,
                                    int64_t opset = 21, int threads = 1) {
  Model model;
  model.opset_imports = {{"", opset}};
  Graph& g = *model.graph;
  std::vector<Value*> inputs;
  std::vector<Tensor> feeds;
  for (size_t i = 0; i < args.size(); ++i) {
    if (!args[i].tensor) {
      inputs.push_back(nullptr);
    } else if (args[i].constant) {
      inputs.push_back(g.addInitializer("c" + std::to_string(i), *args[i].tensor));
    } else {
      NNC_ASSIGN_OR_RETURN(Value * v, g.createValue("in" + std::to_string(i)));
      g.addInput(v);
      inputs.push_back(v);
      feeds.push_back(*args[i].tensor);
    }
  }
  std::vector<std::string> outs;
  for (int i = 0; i < num_outputs; ++i) outs.push_back("out" + std::to_string(i));
  Node* node = g.addNode(op, inputs, outs);
  for (auto& a : attrs) node->setAttribute(std::move(a));
  for (int i = 0; i < num_outputs; ++i) g.addOutput(node->output(i));
  exec::ExecutorOptions options;
  options.num_threads = threads;
  NNC_ASSIGN_OR_RETURN(auto ex, exec::Executor::create(model, options));
  return ex->run(std::move(feeds));
}

template <typename T>
std::vector<T> values(const Tensor& t) {
  auto d = t.data<T>();
  return {d.begin(), d.end()};
}

std::vector<int> nibbles(const Tensor& t) {
  std::vector<int> v;
  for (int64_t i = 0; i < t.numel(); ++i) v.push_back(static_cast<int>(t.elementAsDouble(i)));
  return v;
}

Tensor packed4(DType dtype, Shape shape, const std::vector<int>& vals) {
  Tensor t(dtype, std::move(shape));
  for (size_t i = 0; i < vals.size(); ++i) setPackedNibble(t.mutableBytes(), i, vals[i]);
  return t;
}

Tensor scalarF(float v) { return Tensor::fromVector<float>({}, {v}); }
template <typename T>
Tensor scalarQ(T v) {
  return Tensor::fromVector<T>({}, {v});
}

int32_t refQuant(float x, float s, int32_t zp, int32_t lo, int32_t hi) {
  const float r = std::nearbyint(x / s);
  if (std::isnan(r)) return lo;
  return static_cast<int32_t>(std::clamp<double>(double(r) + zp, lo, hi));
}

// ------------------------------------------------------------------------------------------
// QuantizeLinear / DequantizeLinear

TEST(ExecQuantTest, QuantizeRoundsHalfToEvenAndSaturates) {
  const std::vector<float> x = {0.5f,   1.5f,   2.5f,  -0.5f,  -1.5f,  -2.5f,   1.4999f,
                                254.5f, 255.5f, 300.f, -300.f, 126.5f, -128.5f, 3.5f};
  auto u8 = runOp("QuantizeLinear", {Arg::feed(Tensor::fromVector<float>({14}, x)),
                                     Arg::feed(scalarF(1.f)), Arg::feed(scalarQ<uint8_t>(0))});
  ASSERT_TRUE(u8.isOk()) << u8.status().toString();
  EXPECT_EQ(values<uint8_t>((*u8)[0]),
            (std::vector<uint8_t>{0, 2, 2, 0, 0, 0, 1, 254, 255, 255, 0, 126, 0, 4}));
  auto i8 = runOp("QuantizeLinear", {Arg::feed(Tensor::fromVector<float>({14}, x)),
                                     Arg::feed(scalarF(1.f)), Arg::feed(scalarQ<int8_t>(0))});
  ASSERT_TRUE(i8.isOk()) << i8.status().toString();
  EXPECT_EQ(values<int8_t>((*i8)[0]),
            (std::vector<int8_t>{0, 2, 2, 0, -2, -2, 1, 127, 127, 127, -128, 126, -128, 4}));
  // Zero point added after rounding: 2.5 -> 2, + 1 = 3 (not round(3.5) = 4).
  auto zp = runOp("QuantizeLinear", {Arg::feed(Tensor::fromVector<float>({2}, {5.f, -5.f})),
                                     Arg::feed(scalarF(2.f)), Arg::feed(scalarQ<uint8_t>(1))});
  ASSERT_TRUE(zp.isOk());
  EXPECT_EQ(values<uint8_t>((*zp)[0]), (std::vector<uint8_t>{3, 0}));
  // No zero point: uint8; output_dtype picks the type instead.
  auto none = runOp("QuantizeLinear", {Arg::feed(Tensor::fromVector<float>({2}, {-3.f, 3.f})),
                                       Arg::feed(scalarF(1.f))});
  ASSERT_TRUE(none.isOk());
  EXPECT_EQ((*none)[0].dtype(), DType::kUInt8);
  EXPECT_EQ(values<uint8_t>((*none)[0]), (std::vector<uint8_t>{0, 3}));
  auto typed =
      runOp("QuantizeLinear",
            {Arg::feed(Tensor::fromVector<float>({2}, {-3.f, 3.f})), Arg::feed(scalarF(1.f))},
            {Attribute::makeInt("output_dtype", static_cast<int>(DType::kInt16))});
  ASSERT_TRUE(typed.isOk());
  EXPECT_EQ(values<int16_t>((*typed)[0]), (std::vector<int16_t>{-3, 3}));
}

TEST(ExecQuantTest, QuantizePerAxisMatchesReference) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> ux(-20.f, 20.f), us(0.05f, 0.5f);
  const Shape shape = {2, 3, 4};
  for (int axis : {0, 1, 2, -1}) {
    const int ax = axis < 0 ? axis + 3 : axis;
    std::vector<float> x(24), s(shape[ax]);
    std::vector<int8_t> z(shape[ax]);
    for (auto& v : x) v = ux(rng);
    for (size_t i = 0; i < s.size(); ++i) s[i] = us(rng), z[i] = static_cast<int8_t>(i * 7 - 10);
    auto y = runOp(
        "QuantizeLinear",
        {Arg::feed(Tensor::fromVector(shape, x)), Arg::feed(Tensor::fromVector({shape[ax]}, s)),
         Arg::feed(Tensor::fromVector({shape[ax]}, z))},
        {Attribute::makeInt("axis", axis)}, 1, 13);
    ASSERT_TRUE(y.isOk()) << y.status().toString();
    const auto got = values<int8_t>((*y)[0]);
    for (int64_t i = 0; i < 24; ++i) {
      const int64_t idx[3] = {i / 12, (i / 4) % 3, i % 4};
      const int64_t c = idx[ax];
      EXPECT_EQ(got[i], refQuant(x[i], s[c], z[c], -128, 127)) << "axis " << axis << " i " << i;
    }
  }
}

TEST(ExecQuantTest, BlockedInt4QuantizeAndDequantize) {
  // x [2, 5], blocks of 2 along axis 1 (last block has 1 element): scale [2, 3].
  const std::vector<float> x = {0.f, 1.f, 2.5f, -3.f, 7.f, -1.f, 4.f, -16.f, 9.f, 0.5f};
  const std::vector<float> s = {1.f, 0.5f, 2.f, 1.f, 2.f, 0.25f};
  const std::vector<int> z = {0, 1, -1, 2, 0, -3};
  auto q = runOp("QuantizeLinear",
                 {Arg::feed(Tensor::fromVector<float>({2, 5}, x)),
                  Arg::feed(Tensor::fromVector<float>({2, 3}, s)),
                  Arg::constant_(packed4(DType::kInt4, {2, 3}, z))},
                 {Attribute::makeInt("axis", 1), Attribute::makeInt("block_size", 2)});
  ASSERT_TRUE(q.isOk()) << q.status().toString();
  const Tensor& qt = (*q)[0];
  ASSERT_EQ(qt.dtype(), DType::kInt4);
  std::vector<int> want;
  for (int i = 0; i < 10; ++i) {
    const int p = (i / 5) * 3 + (i % 5) / 2;
    want.push_back(refQuant(x[i], s[p], z[p], -8, 7));
  }
  EXPECT_EQ(nibbles(qt), want);
  // Packing: two per byte, low nibble first.
  ASSERT_EQ(qt.byteSize(), 5u);
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(static_cast<uint8_t>(qt.bytes()[i]),
              ((want[2 * i] & 15) | ((want[2 * i + 1] & 15) << 4)));

  auto dq = runOp("DequantizeLinear",
                  {Arg::feed(qt), Arg::feed(Tensor::fromVector<float>({2, 3}, s)),
                   Arg::constant_(packed4(DType::kInt4, {2, 3}, z))},
                  {Attribute::makeInt("axis", -1), Attribute::makeInt("block_size", 2)});
  ASSERT_TRUE(dq.isOk()) << dq.status().toString();
  const auto y = values<float>((*dq)[0]);
  for (int i = 0; i < 10; ++i) {
    const int p = (i / 5) * 3 + (i % 5) / 2;
    EXPECT_EQ(y[i], static_cast<float>(want[i] - z[p]) * s[p]);
  }

  // uint4, per-tensor, odd element count.
  auto u4 = runOp("QuantizeLinear",
                  {Arg::feed(Tensor::fromVector<float>({3}, {-1.f, 7.5f, 20.f})),
                   Arg::feed(scalarF(1.f)), Arg::feed(packed4(DType::kUInt4, {}, {8}))});
  ASSERT_TRUE(u4.isOk()) << u4.status().toString();
  EXPECT_EQ((*u4)[0].dtype(), DType::kUInt4);
  EXPECT_EQ(nibbles((*u4)[0]), (std::vector<int>{7, 15, 15}));
}

TEST(ExecQuantTest, BlockedShapeMismatchFails) {
  auto r = runOp(
      "QuantizeLinear",
      {Arg::feed(Tensor(DType::kFloat32, {2, 5})), Arg::feed(Tensor(DType::kFloat32, {2, 2}))},
      {Attribute::makeInt("axis", 1), Attribute::makeInt("block_size", 2)});
  EXPECT_FALSE(r.isOk());
}

TEST(ExecQuantTest, DequantizePerAxisInt32AndHalf) {
  // uint8 per-axis along axis -2 of [2, 3, 2].
  std::vector<uint8_t> x(12);
  for (int i = 0; i < 12; ++i) x[i] = static_cast<uint8_t>(i * 21);
  const std::vector<float> s = {0.5f, 0.25f, 2.f};
  const std::vector<uint8_t> z = {0, 128, 255};
  auto y = runOp("DequantizeLinear",
                 {Arg::feed(Tensor::fromVector<uint8_t>({2, 3, 2}, x)),
                  Arg::feed(Tensor::fromVector<float>({3}, s)),
                  Arg::feed(Tensor::fromVector<uint8_t>({3}, z))},
                 {Attribute::makeInt("axis", -2)}, 1, 13);
  ASSERT_TRUE(y.isOk()) << y.status().toString();
  const auto got = values<float>((*y)[0]);
  for (int i = 0; i < 12; ++i) {
    const int c = (i / 2) % 3;
    EXPECT_EQ(got[i], (x[i] - z[c]) * s[c]);
  }
  // int32 (bias) without a zero point.
  auto yi = runOp(
      "DequantizeLinear",
      {Arg::feed(Tensor::fromVector<int32_t>({3}, {-1000000, 0, 77})), Arg::feed(scalarF(0.001f))});
  ASSERT_TRUE(yi.isOk());
  EXPECT_EQ(values<float>((*yi)[0]), (std::vector<float>{-1000000 * 0.001f, 0.f, 77 * 0.001f}));
  // A float16 scale gives a float16 output.
  Tensor half_scale(DType::kFloat16, {});
  const uint16_t half_0_5 = 0x3800;  // 0.5
  std::memcpy(half_scale.mutableBytes().data(), &half_0_5, 2);
  auto yh = runOp("DequantizeLinear",
                  {Arg::feed(Tensor::fromVector<int8_t>({2}, {-3, 5})), Arg::feed(half_scale)});
  ASSERT_TRUE(yh.isOk()) << yh.status().toString();
  EXPECT_EQ((*yh)[0].dtype(), DType::kFloat16);
  EXPECT_EQ((*yh)[0].elementAsDouble(0), -1.5);
  EXPECT_EQ((*yh)[0].elementAsDouble(1), 2.5);
}

TEST(ExecQuantTest, DynamicQuantizeLinearSpecExample) {
  auto r = runOp("DynamicQuantizeLinear",
                 {Arg::feed(Tensor::fromVector<float>({6}, {0.f, 2.f, -3.f, -2.5f, 1.34f, 0.5f}))},
                 {}, 3, 11);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_FLOAT_EQ((*r)[1].data<float>()[0], 5.f / 255.f);
  EXPECT_EQ((*r)[2].data<uint8_t>()[0], 153);
  EXPECT_EQ(values<uint8_t>((*r)[0]), (std::vector<uint8_t>{153, 255, 0, 26, 221, 179}));
  // All zeros: scale 1 (as ONNX Runtime), zero point 0.
  auto z = runOp("DynamicQuantizeLinear", {Arg::feed(Tensor(DType::kFloat32, {4}))}, {}, 3, 11);
  ASSERT_TRUE(z.isOk());
  EXPECT_EQ((*z)[1].data<float>()[0], 1.f);
  EXPECT_EQ((*z)[2].data<uint8_t>()[0], 0);
}

TEST(ExecQuantTest, Float8IsReportedUnsupported) {
  auto r =
      runOp("QuantizeLinear", {Arg::feed(Tensor(DType::kFloat32, {2})), Arg::feed(scalarF(1.f))},
            {Attribute::makeInt("output_dtype", static_cast<int>(DType::kFloat8E4M3FN))});
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
}

// ------------------------------------------------------------------------------------------
// Integer convolution

struct ConvCase {
  Shape x, w;
  int64_t group = 1;
  std::vector<int64_t> strides, pads, dilations;
  std::string auto_pad;
};

std::vector<Attribute> convAttrs(const ConvCase& c) {
  std::vector<Attribute> a = {Attribute::makeInt("group", c.group)};
  if (!c.strides.empty()) a.push_back(Attribute::makeInts("strides", c.strides));
  if (!c.pads.empty()) a.push_back(Attribute::makeInts("pads", c.pads));
  if (!c.dilations.empty()) a.push_back(Attribute::makeInts("dilations", c.dilations));
  if (!c.auto_pad.empty()) a.push_back(Attribute::makeString("auto_pad", c.auto_pad));
  return a;
}

// Naive int64 convolution of (x - xzp) and (w - wzp[m]); wraps to int32 like an int32 accumulator.
std::vector<int32_t> refConv(const ConvCase& c, const std::vector<int32_t>& x, int32_t xzp,
                             const std::vector<int32_t>& w, const std::vector<int32_t>& wzp,
                             Shape& out_shape) {
  const size_t sp = c.x.size() - 2;
  const int64_t n = c.x[0], ch = c.x[1], m = c.w[0], cg = ch / c.group, mg = m / c.group;
  std::vector<int64_t> in(sp), k(sp), s(sp), d(sp), pb(sp), out(sp);
  for (size_t i = 0; i < sp; ++i) {
    in[i] = c.x[2 + i];
    k[i] = c.w[2 + i];
    s[i] = c.strides.empty() ? 1 : c.strides[i];
    d[i] = c.dilations.empty() ? 1 : c.dilations[i];
    const int64_t ext = (k[i] - 1) * d[i] + 1;
    if (c.auto_pad == "SAME_UPPER" || c.auto_pad == "SAME_LOWER") {
      out[i] = (in[i] + s[i] - 1) / s[i];
      const int64_t total = std::max<int64_t>(0, (out[i] - 1) * s[i] + ext - in[i]);
      pb[i] = c.auto_pad == "SAME_UPPER" ? total / 2 : (total + 1) / 2;
    } else {
      pb[i] = c.pads.empty() ? 0 : c.pads[i];
      const int64_t pe = c.pads.empty() ? 0 : c.pads[i + sp];
      out[i] = (in[i] + pb[i] + pe - ext) / s[i] + 1;
    }
  }
  const int64_t oh = sp == 2 ? out[0] : 1, ow = out[sp - 1];
  const int64_t ih = sp == 2 ? in[0] : 1, iw = in[sp - 1];
  const int64_t kh = sp == 2 ? k[0] : 1, kw = k[sp - 1];
  const int64_t sh = sp == 2 ? s[0] : 1, sw = s[sp - 1], dh = sp == 2 ? d[0] : 1, dw = d[sp - 1];
  const int64_t pt = sp == 2 ? pb[0] : 0, pl = pb[sp - 1];
  out_shape = {n, m};
  for (auto o : out) out_shape.push_back(o);
  std::vector<int32_t> y(static_cast<size_t>(n * m * oh * ow));
  for (int64_t b = 0; b < n; ++b)
    for (int64_t oc = 0; oc < m; ++oc) {
      const int64_t g = oc / mg;
      for (int64_t yo = 0; yo < oh; ++yo)
        for (int64_t xo = 0; xo < ow; ++xo) {
          int64_t acc = 0;
          for (int64_t ic = 0; ic < cg; ++ic)
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) {
                const int64_t sy = yo * sh - pt + i * dh, sx = xo * sw - pl + j * dw;
                if (sy < 0 || sy >= ih || sx < 0 || sx >= iw) continue;
                const int64_t xv = x[((b * ch + g * cg + ic) * ih + sy) * iw + sx] - xzp;
                const int64_t wv = w[((oc * cg + ic) * kh + i) * kw + j] - wzp[oc];
                acc += xv * wv;
              }
          y[((b * m + oc) * oh + yo) * ow + xo] = static_cast<int32_t>(acc);
        }
    }
  return y;
}

template <typename T>
Tensor randomInts(std::mt19937& rng, Shape shape, int lo = std::numeric_limits<T>::min(),
                  int hi = std::numeric_limits<T>::max()) {
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<T> v(static_cast<size_t>(shapeNumel(shape)));
  for (auto& e : v) e = static_cast<T>(d(rng));
  return Tensor::fromVector(std::move(shape), v);
}

std::vector<int32_t> ints(const Tensor& t) {
  std::vector<int32_t> v;
  for (int64_t i = 0; i < t.numel(); ++i) v.push_back(static_cast<int32_t>(t.elementAsDouble(i)));
  return v;
}

ConvCase conv(Shape x, Shape w, int64_t group = 1, std::vector<int64_t> strides = {},
              std::vector<int64_t> pads = {}, std::vector<int64_t> dilations = {},
              std::string auto_pad = "") {
  return ConvCase{std::move(x),       std::move(w),    group,
                  std::move(strides), std::move(pads), std::move(dilations),
                  std::move(auto_pad)};
}

std::vector<ConvCase> convCases() {
  return {
      conv({1, 3, 8, 8}, {4, 3, 3, 3}),
      conv({2, 3, 7, 6}, {5, 3, 3, 3}, 1, {}, {1, 1, 1, 1}),
      conv({1, 4, 9, 8}, {6, 4, 3, 2}, 1, {2, 3}, {0, 1, 2, 1}),
      conv({1, 2, 10, 10}, {3, 2, 3, 3}, 1, {}, {2, 2, 2, 2}, {2, 2}),
      conv({2, 4, 6, 6}, {6, 2, 3, 3}, 2, {}, {1, 1, 1, 1}),
      conv({1, 6, 7, 7}, {6, 1, 3, 3}, 6, {2, 2}, {1, 1, 1, 1}),  // depthwise
      conv({1, 3, 6, 6}, {6, 1, 3, 3}, 3, {}, {0, 1, 1, 0}),      // depthwise, multiplier 2
      conv({2, 8, 5, 5}, {7, 8, 1, 1}),                           // pointwise
      conv({1, 3, 7, 7}, {4, 3, 4, 4}, 1, {2, 2}, {}, {}, "SAME_UPPER"),
      conv({1, 3, 7, 7}, {4, 3, 4, 4}, 1, {}, {}, {}, "SAME_LOWER"),
      conv({1, 3, 7, 7}, {4, 3, 2, 2}, 1, {2, 1}, {}, {}, "VALID"),
      conv({2, 3, 11}, {4, 3, 3}, 1, {2}, {1, 2}),  // 1-D
      conv({1, 4, 11}, {4, 2, 3}, 2, {}, {}, {2}),  // 1-D grouped, dilated
      conv({1, 32, 9, 9}, {16, 32, 3, 3}, 1, {}, {1, 1, 1, 1}),
  };
}

TEST(ExecQuantTest, QLinearConvMatchesNaiveReferenceBitExact) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> us(0.001f, 0.01f);
  int checked = 0;
  for (const ConvCase& c : convCases()) {
    for (int combo = 0; combo < 4; ++combo) {
      // combo: 0 u8/u8->u8, 1 u8/i8->i8, 2 i8/i8->i8 per-channel, 3 u8/u8->i8 per-channel zp
      const bool x_signed = combo == 2, w_signed = combo == 1 || combo == 2;
      const bool y_signed = combo != 0, per_channel = combo >= 2;
      const int64_t m = c.w[0];
      Tensor x = x_signed ? randomInts<int8_t>(rng, c.x) : randomInts<uint8_t>(rng, c.x);
      Tensor w = w_signed ? randomInts<int8_t>(rng, c.w) : randomInts<uint8_t>(rng, c.w);
      const int32_t xzp = x_signed ? -5 : 131;
      Tensor xz = x_signed ? scalarQ<int8_t>(-5) : scalarQ<uint8_t>(131);
      Tensor wz;
      std::vector<int32_t> wzp(m, 0);
      if (per_channel) {
        wz = w_signed ? randomInts<int8_t>(rng, {m}, -3, 3) : randomInts<uint8_t>(rng, {m});
        wzp = ints(wz);
      } else {
        wz = w_signed ? scalarQ<int8_t>(2) : scalarQ<uint8_t>(120);
        std::fill(wzp.begin(), wzp.end(), w_signed ? 2 : 120);
      }
      std::vector<float> ws(per_channel ? m : 1);
      for (auto& v : ws) v = us(rng);
      Tensor wst = per_channel ? Tensor::fromVector<float>({m}, ws) : scalarF(ws[0]);
      const float xs = 0.05f, ys = 0.07f;
      const int32_t yzp = y_signed ? 3 : 125;
      Tensor yz = y_signed ? scalarQ<int8_t>(3) : scalarQ<uint8_t>(125);
      Tensor bias = randomInts<int32_t>(rng, {m}, -20000, 20000);
      Shape ref_shape;
      const auto acc = refConv(c, ints(x), xzp, ints(w), wzp, ref_shape);
      const auto bd = values<int32_t>(bias);
      const int64_t plane = shapeNumel(ref_shape) / (ref_shape[0] * m);
      for (int variant = 0; variant < 2; ++variant) {
        // variant 0: weights fed at run time, 1 thread; 1: constant (pre-packed), 2 threads.
        auto wa = variant ? Arg::constant_(w) : Arg::feed(w);
        auto wza = variant ? Arg::constant_(wz) : Arg::feed(wz);
        auto r = runOp("QLinearConv",
                       {Arg::feed(x), Arg::feed(scalarF(xs)), Arg::feed(xz), wa, Arg::feed(wst),
                        wza, Arg::feed(scalarF(ys)), Arg::feed(yz), Arg::feed(bias)},
                       convAttrs(c), 1, 10, variant ? 2 : 1);
        ASSERT_TRUE(r.isOk()) << r.status().toString();
        const Tensor& y = (*r)[0];
        ASSERT_EQ(y.shape(), ref_shape);
        ASSERT_EQ(y.dtype(), y_signed ? DType::kInt8 : DType::kUInt8);
        const int32_t lo = y_signed ? -128 : 0, hi = y_signed ? 127 : 255;
        for (int64_t i = 0; i < y.numel(); ++i) {
          const int64_t oc = (i / plane) % m;
          const float mult = xs * ws[per_channel ? oc : 0] / ys;
          const int32_t want =
              refQuant(static_cast<float>(acc[i] + bd[oc]) * mult, 1.f, yzp, lo, hi);
          ASSERT_EQ(static_cast<int32_t>(y.elementAsDouble(i)), want)
              << "case x" << shapeToString(c.x) << " w" << shapeToString(c.w) << " combo " << combo
              << " element " << i;
        }
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, static_cast<int>(convCases().size()) * 8);
}

TEST(ExecQuantTest, ConvIntegerMatchesNaiveReferenceBitExact) {
  std::mt19937 rng(11);
  for (const ConvCase& c : convCases()) {
    const int64_t m = c.w[0];
    Tensor x = randomInts<uint8_t>(rng, c.x);
    Tensor w = randomInts<uint8_t>(rng, c.w);
    Tensor wz = randomInts<uint8_t>(rng, {m});  // per output channel
    auto r = runOp(
        "ConvInteger",
        {Arg::feed(x), Arg::constant_(w), Arg::feed(scalarQ<uint8_t>(77)), Arg::constant_(wz)},
        convAttrs(c), 1, 10);
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    Shape ref_shape;
    const auto want = refConv(c, ints(x), 77, ints(w), ints(wz), ref_shape);
    ASSERT_EQ((*r)[0].shape(), ref_shape);
    EXPECT_EQ(values<int32_t>((*r)[0]), want) << "x" << shapeToString(c.x);
    // Without zero points.
    auto r0 = runOp("ConvInteger", {Arg::feed(x), Arg::feed(w)}, convAttrs(c), 1, 10);
    ASSERT_TRUE(r0.isOk()) << r0.status().toString();
    EXPECT_EQ(values<int32_t>((*r0)[0]),
              refConv(c, ints(x), 0, ints(w), std::vector<int32_t>(m, 0), ref_shape));
  }
}

TEST(ExecQuantTest, ConvIntegerExactBeyondFloatPrecision) {
  // Sums near -250 * 128 * 1152 * 3/4 (about -2^24.8): a float GEMM would round them.
  std::mt19937 rng(3);
  const ConvCase c = conv({1, 128, 6, 6}, {8, 128, 3, 3}, 1, {}, {1, 1, 1, 1});
  Tensor x = randomInts<uint8_t>(rng, c.x, 250, 255);
  std::vector<int8_t> wv(static_cast<size_t>(shapeNumel(c.w)));
  for (size_t i = 0; i < wv.size(); ++i) wv[i] = (rng() % 8 == 0) ? 127 : -128;
  Tensor w = Tensor::fromVector(c.w, wv);
  auto r = runOp("ConvInteger", {Arg::feed(x), Arg::feed(w)}, convAttrs(c), 1, 10);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  Shape ref_shape;
  EXPECT_EQ(values<int32_t>((*r)[0]),
            refConv(c, ints(x), 0, ints(w), std::vector<int32_t>(8, 0), ref_shape));
}

TEST(ExecQuantTest, ThreeDimensionalConvIsUnsupported) {
  auto r = runOp("ConvInteger",
                 {Arg::feed(Tensor(DType::kUInt8, {1, 1, 3, 3, 3})),
                  Arg::feed(Tensor(DType::kUInt8, {1, 1, 2, 2, 2}))},
                 {}, 1, 10);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
}

// ------------------------------------------------------------------------------------------
// Integer matrix products

// Naive batched product of A [ab..., M, K] and B [bb..., K, N] (batch broadcast, 2-D each
// after promotion) with per-row zero points of A (one per A matrix row) and per-column of B.
std::vector<int32_t> refMatMul(const std::vector<int32_t>& a, const std::vector<int32_t>& b,
                               int64_t batches, bool a_bcast, bool b_bcast, int64_t m, int64_t k,
                               int64_t n, const std::vector<int32_t>& azp,
                               const std::vector<int32_t>& bzp) {
  std::vector<int32_t> y(static_cast<size_t>(batches * m * n));
  for (int64_t bi = 0; bi < batches; ++bi) {
    const int64_t ao = a_bcast ? 0 : bi, bo = b_bcast ? 0 : bi;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        int64_t acc = 0;
        for (int64_t t = 0; t < k; ++t)
          acc += int64_t(a[(ao * m + i) * k + t] - azp[ao * m + i]) *
                 (b[(bo * k + t) * n + j] - bzp[bo * n + j]);
        y[(bi * m + i) * n + j] = static_cast<int32_t>(acc);
      }
  }
  return y;
}

TEST(ExecQuantTest, MatMulIntegerPerRowAndColumnZeroPoints) {
  std::mt19937 rng(5);
  const int64_t m = 5, k = 9, n = 4;
  Tensor a = randomInts<uint8_t>(rng, {m, k});
  Tensor b = randomInts<int8_t>(rng, {k, n});
  Tensor az = randomInts<uint8_t>(rng, {m});
  Tensor bz = randomInts<int8_t>(rng, {n});
  auto r =
      runOp("MatMulInteger", {Arg::feed(a), Arg::feed(b), Arg::feed(az), Arg::feed(bz)}, {}, 1, 10);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ((*r)[0].shape(), (Shape{m, n}));
  EXPECT_EQ(values<int32_t>((*r)[0]),
            refMatMul(ints(a), ints(b), 1, false, false, m, k, n, ints(az), ints(bz)));

  // Batched A [3, M, K] against a shared B, zero points shaped [3, M, 1] and [1, N].
  Tensor a3 = randomInts<int8_t>(rng, {3, m, k});
  Tensor b2 = randomInts<uint8_t>(rng, {k, n});
  Tensor az3 = randomInts<int8_t>(rng, {3, m, 1});
  Tensor bz2 = randomInts<uint8_t>(rng, {1, n});
  auto r3 = runOp("MatMulInteger", {Arg::feed(a3), Arg::feed(b2), Arg::feed(az3), Arg::feed(bz2)},
                  {}, 1, 10);
  ASSERT_TRUE(r3.isOk()) << r3.status().toString();
  EXPECT_EQ((*r3)[0].shape(), (Shape{3, m, n}));
  EXPECT_EQ(values<int32_t>((*r3)[0]),
            refMatMul(ints(a3), ints(b2), 3, false, true, m, k, n, ints(az3), ints(bz2)));

  // 1-D A: [K] x [K, N] -> [N].
  Tensor a1 = randomInts<uint8_t>(rng, {k});
  auto r1 = runOp("MatMulInteger", {Arg::feed(a1), Arg::feed(b2)}, {}, 1, 10);
  ASSERT_TRUE(r1.isOk()) << r1.status().toString();
  EXPECT_EQ((*r1)[0].shape(), (Shape{n}));
  EXPECT_EQ(values<int32_t>((*r1)[0]), refMatMul(ints(a1), ints(b2), 1, false, false, 1, k, n, {0},
                                                 std::vector<int32_t>(n, 0)));
}

TEST(ExecQuantTest, MatMulIntegerWrapsLikeAnInt32Accumulator) {
  // 255 * 127 * 70000 overflows int32: the result wraps (exact in double, then truncated).
  const int64_t k = 70000;
  Tensor a = Tensor::fromVector<uint8_t>({1, k}, std::vector<uint8_t>(k, 255));
  Tensor b = Tensor::fromVector<int8_t>({k, 1}, std::vector<int8_t>(k, 127));
  auto r = runOp("MatMulInteger", {Arg::feed(a), Arg::feed(b)}, {}, 1, 10);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ((*r)[0].data<int32_t>()[0], static_cast<int32_t>(int64_t{255} * 127 * k));
}

TEST(ExecQuantTest, QLinearMatMulMatchesReference) {
  std::mt19937 rng(9);
  const int64_t m = 6, k = 33, n = 7;
  for (int combo = 0; combo < 3; ++combo) {
    // 0: u8 x u8 per-tensor; 1: u8 x i8 per-column b; 2: i8 x u8, batched a and b.
    const int64_t batch = combo == 2 ? 2 : 1;
    Tensor a =
        combo == 2 ? randomInts<int8_t>(rng, {batch, m, k}) : randomInts<uint8_t>(rng, {m, k});
    Tensor b = combo == 1 ? randomInts<int8_t>(rng, {k, n})
                          : (combo == 2 ? randomInts<uint8_t>(rng, {batch, k, n})
                                        : randomInts<uint8_t>(rng, {k, n}));
    Tensor az = combo == 2 ? scalarQ<int8_t>(-7) : scalarQ<uint8_t>(100);
    std::vector<float> bs(combo == 1 ? n : 1, 0.02f);
    for (auto& v : bs) v = 0.01f + 0.001f * (rng() % 20);
    Tensor bst = combo == 1 ? Tensor::fromVector<float>({n}, bs) : scalarF(bs[0]);
    Tensor bz = combo == 1 ? randomInts<int8_t>(rng, {n}, -2, 2) : scalarQ<uint8_t>(140);
    const float as = 0.03f, ys = 0.5f;
    Tensor yz = combo == 2 ? scalarQ<int8_t>(1) : scalarQ<uint8_t>(128);
    auto r = runOp("QLinearMatMul",
                   {Arg::feed(a), Arg::feed(scalarF(as)), Arg::feed(az), Arg::feed(b),
                    Arg::feed(bst), Arg::feed(bz), Arg::feed(scalarF(ys)), Arg::feed(yz)},
                   {}, 1, 10);
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    std::vector<int32_t> azp(batch * m, ints(az)[0]), bzp(batch * n);
    const auto bzv = ints(bz);
    for (int64_t i = 0; i < batch * n; ++i) bzp[i] = bzv.size() == 1 ? bzv[0] : bzv[i % n];
    const auto acc = refMatMul(ints(a), ints(b), batch, false, false, m, k, n, azp, bzp);
    const Tensor& y = (*r)[0];
    const int32_t lo = combo == 2 ? -128 : 0, hi = combo == 2 ? 127 : 255,
                  zp = combo == 2 ? 1 : 128;
    for (int64_t i = 0; i < y.numel(); ++i) {
      const float mult = as * bs[bs.size() == 1 ? 0 : i % n] / ys;
      ASSERT_EQ(static_cast<int32_t>(y.elementAsDouble(i)),
                refQuant(static_cast<float>(acc[i]) * mult, 1.f, zp, lo, hi))
          << "combo " << combo << " element " << i;
    }
  }
}

}  // namespace
}  // namespace nnc
