// Element-wise, reduction and resize kernels: the broadcast engine against a naive reference
// (outputs pre-filled with NaN so unwritten elements show), 16-bit float conversions, and
// kernels run through the registry for the opset- and attribute-dependent variants.

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "../src/exec/kernels/elementwise_util.h"
#include "nncompress/exec/kernel.h"
#include "nncompress/ir/graph.h"

namespace nnc::exec {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<float> randomFloats(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-4.f, 4.f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = dist(rng);
  return v;
}

// Offset into an operand of shape `s` for the output multi-index `idx` (numpy broadcasting).
int64_t naiveOffset(const Shape& s, const Shape& out, const std::vector<int64_t>& idx) {
  int64_t off = 0, stride = 1;
  for (size_t i = s.size(); i-- > 0;) {
    const size_t o = i + (out.size() - s.size());
    if (s[i] != 1) off += idx[o] * stride;
    stride *= s[i];
  }
  return off;
}

std::vector<int64_t> unravel(int64_t flat, const Shape& shape) {
  std::vector<int64_t> idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = flat % shape[d];
    flat /= shape[d];
  }
  return idx;
}

struct ShapePair {
  Shape a, b;
};

void PrintTo(const ShapePair& p, std::ostream* os) {
  *os << shapeToString(p.a) << "_" << shapeToString(p.b);
}

class BroadcastBinaryTest : public ::testing::TestWithParam<ShapePair> {};

TEST_P(BroadcastBinaryTest, MatchesNaiveReferenceAndWritesEveryElement) {
  const auto& [sa, sb] = GetParam();
  auto plan = makeBroadcastPlan({&sa, &sb});
  ASSERT_TRUE(plan.isOk()) << plan.status().toString();
  const auto a = randomFloats(shapeNumel(sa), 1), b = randomFloats(shapeNumel(sb), 2);
  const Shape& os = plan->out_shape;
  ASSERT_EQ(plan->numel, shapeNumel(os));
  for (int threads : {1, 4}) {
    std::vector<float> out(static_cast<size_t>(plan->numel), kNaN);
    RunContext ctx;
    ctx.num_threads = threads;
    broadcastBinary(*plan, a.data(), b.data(), out.data(), ctx,
                    [](float x, float y) { return x - 2.f * y; });
    for (int64_t i = 0; i < plan->numel; ++i) {
      const auto idx = unravel(i, os);
      const float want = a[naiveOffset(sa, os, idx)] - 2.f * b[naiveOffset(sb, os, idx)];
      ASSERT_EQ(out[i], want) << "element " << i << " of " << shapeToString(os) << " ("
                              << shapeToString(sa) << " op " << shapeToString(sb) << "), "
                              << threads << " threads";
    }
  }
  // A bool-valued op into a byte buffer pre-filled with an impossible value.
  std::vector<uint8_t> cmp(static_cast<size_t>(plan->numel), 7);
  broadcastBinary(*plan, a.data(), b.data(), cmp.data(), RunContext{},
                  [](float x, float y) -> uint8_t { return x < y; });
  for (int64_t i = 0; i < plan->numel; ++i) {
    const auto idx = unravel(i, os);
    ASSERT_EQ(cmp[i], a[naiveOffset(sa, os, idx)] < b[naiveOffset(sb, os, idx)] ? 1 : 0) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, BroadcastBinaryTest,
    ::testing::Values(ShapePair{{2, 3, 4, 5}, {2, 3, 4, 5}},              // same shape
                      ShapePair{{2, 3, 4, 5}, {}},                        // scalar right
                      ShapePair{{}, {2, 3, 4, 5}},                        // scalar left
                      ShapePair{{2, 3, 4, 5}, {1}},                       // 1-element right
                      ShapePair{{}, {}},                                  // scalar op scalar
                      ShapePair{{2, 16, 9, 9}, {16, 1, 1}},               // per-channel
                      ShapePair{{2, 16, 9, 9}, {1, 16, 1, 1}},            // per-channel, full rank
                      ShapePair{{16, 1, 1}, {2, 16, 9, 9}},               // per-channel on the left
                      ShapePair{{3, 4, 5}, {5}},                          // row vector
                      ShapePair{{3, 4, 5}, {4, 1}},                       // column
                      ShapePair{{1, 4, 1, 6}, {3, 1, 5, 6}},              // both broadcast
                      ShapePair{{3, 1}, {1, 4}},                          // outer product
                      ShapePair{{2, 3, 4, 5, 6, 7}, {1, 3, 1, 5, 1, 7}},  // alternating
                      ShapePair{{2, 0, 3}, {3}},                          // empty
                      ShapePair{{1, 1, 1}, {1}},                          // all ones
                      ShapePair{{4, 64, 32, 32}, {64, 1, 1}},  // big per-channel (parallel)
                      ShapePair{{3, 50000}, {50000}},          // long runs split in blocks
                      ShapePair{{50000, 3}, {50000, 1}},       // many short runs
                      ShapePair{{70000}, {70000}}),            // big same shape
    [](const auto& info) {
      std::string name = std::to_string(info.index) + "_" + shapeToString(info.param.a) + "_" +
                         shapeToString(info.param.b);
      for (char& c : name)
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      return name;
    });

TEST(BroadcastPlanTest, FastPathsBecomeSimpleRuns) {
  const Shape x{2, 16, 9, 9}, c{16, 1, 1}, s{};
  auto same = makeBroadcastPlan({&x, &x});
  ASSERT_TRUE(same.isOk());
  EXPECT_EQ(same->rows(), 1);
  EXPECT_EQ(same->inner, 2 * 16 * 81);
  EXPECT_EQ(same->inner_stride[0], 1);
  EXPECT_EQ(same->inner_stride[1], 1);
  auto scalar = makeBroadcastPlan({&x, &s});
  ASSERT_TRUE(scalar.isOk());
  EXPECT_EQ(scalar->rows(), 1);
  EXPECT_EQ(scalar->inner_stride[1], 0);
  auto chan = makeBroadcastPlan({&x, &c});
  ASSERT_TRUE(chan.isOk());
  EXPECT_EQ(chan->inner, 81);  // one run per (n, c) plane, the channel value repeated
  EXPECT_EQ(chan->rows(), 32);
  EXPECT_EQ(chan->inner_stride[0], 1);
  EXPECT_EQ(chan->inner_stride[1], 0);
  const Shape bad{3};
  EXPECT_FALSE(makeBroadcastPlan({&x, &bad}).isOk());
}

TEST(BroadcastTernaryTest, MatchesNaiveReference) {
  const Shape sc{3, 1, 5}, sx{4, 1}, sy{5};
  auto plan = makeBroadcastPlan({&sc, &sx, &sy});
  ASSERT_TRUE(plan.isOk());
  ASSERT_EQ(plan->out_shape, (Shape{3, 4, 5}));
  std::vector<uint8_t> cond(15);
  for (size_t i = 0; i < cond.size(); ++i) cond[i] = (i * 7) % 3 == 0;
  const auto x = randomFloats(4, 3), y = randomFloats(5, 4);
  std::vector<float> out(60, kNaN);
  broadcastTernary(*plan, cond.data(), x.data(), y.data(), out.data(), RunContext{},
                   [](uint8_t c, float a, float b) { return c ? a : b; });
  for (int64_t i = 0; i < 60; ++i) {
    const auto idx = unravel(i, plan->out_shape);
    const float want = cond[naiveOffset(sc, plan->out_shape, idx)]
                           ? x[naiveOffset(sx, plan->out_shape, idx)]
                           : y[naiveOffset(sy, plan->out_shape, idx)];
    ASSERT_EQ(out[i], want) << i;
  }
}

TEST(UnaryMapTest, WritesEveryElementInParallel) {
  const auto x = randomFloats(100003, 5);
  std::vector<float> y(x.size(), kNaN);
  RunContext ctx;
  ctx.num_threads = 4;
  unaryMap(x.data(), y.data(), static_cast<int64_t>(x.size()), ctx, [](float v) { return v * 3; });
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(y[i], x[i] * 3) << i;
}

TEST(HalfTest, EveryHalfRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = halfToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(halfToFloat(floatToHalf(f))));
      continue;
    }
    ASSERT_EQ(floatToHalf(f), h) << std::hex << h;
  }
}

TEST(HalfTest, RoundsToNearestEven) {
  EXPECT_EQ(floatToHalf(1.f), 0x3c00);
  EXPECT_EQ(floatToHalf(-2.f), 0xc000);
  EXPECT_EQ(floatToHalf(65504.f), 0x7bff);
  EXPECT_EQ(floatToHalf(65519.f), 0x7bff);
  EXPECT_EQ(floatToHalf(65520.f), 0x7c00);  // rounds up to infinity
  EXPECT_EQ(floatToHalf(1e10f), 0x7c00);
  EXPECT_EQ(floatToHalf(std::ldexp(1.f, -24)), 0x0001);        // smallest subnormal
  EXPECT_EQ(floatToHalf(std::ldexp(1.f, -25)), 0x0000);        // tie to even (0)
  EXPECT_EQ(floatToHalf(std::ldexp(3.f, -25)), 0x0002);        // tie to even (2)
  EXPECT_EQ(floatToHalf(1.f + std::ldexp(1.f, -11)), 0x3c00);  // tie to even
  EXPECT_EQ(floatToHalf(1.f + std::ldexp(3.f, -11)), 0x3c02);
  EXPECT_EQ(floatToBfloat16(1.f), 0x3f80);
  EXPECT_EQ(bfloat16ToFloat(0x3f80), 1.f);
  EXPECT_TRUE(std::isnan(bfloat16ToFloat(floatToBfloat16(kNaN))));
}

// ---------------------------------------------------------------------------------------------
// Kernels through the registry.

struct OpRun {
  std::string op;
  int64_t opset = 17;
  std::vector<Attribute> attrs;
  int threads = 2;
  size_t num_outputs = 1;

  explicit OpRun(std::string op_type, int64_t opset_version = 17, std::vector<Attribute> a = {},
                 int num_threads = 2)
      : op(std::move(op_type)), opset(opset_version), attrs(std::move(a)), threads(num_threads) {}

  // inputs: nullptr for an omitted optional input.
  StatusOr<std::vector<Tensor>> run(std::vector<const Tensor*> inputs) const {
    Graph g;
    std::vector<Value*> values;
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (!inputs[i]) {
        values.push_back(nullptr);
        continue;
      }
      Value* v = g.createValue("in" + std::to_string(i)).value();
      g.addInput(v);
      values.push_back(v);
    }
    std::vector<std::string> outs;
    for (size_t i = 0; i < num_outputs; ++i) outs.push_back("out" + std::to_string(i));
    Node* node = g.addNode(op, values, outs);
    for (const Attribute& a : attrs) node->setAttribute(a);
    const KernelFactory* f = KernelRegistry::builtin().find(*node);
    if (!f) return unsupported("no kernel for " + op);
    NNC_ASSIGN_OR_RETURN(std::unique_ptr<Kernel> k, (*f)(KernelBuildContext{*node, opset}));
    std::vector<Tensor> results(num_outputs);
    RunContext ctx;
    ctx.num_threads = threads;
    NNC_RETURN_IF_ERROR(k->run(inputs, results, ctx));
    return results;
  }
  Tensor run1(std::vector<const Tensor*> inputs) const {
    auto r = run(std::move(inputs));
    EXPECT_TRUE(r.isOk()) << op << ": " << r.status().toString();
    return r.isOk() ? std::move(r).value()[0] : Tensor();
  }
};

template <typename T>
std::vector<T> values(const Tensor& t) {
  auto d = t.data<T>();
  return {d.begin(), d.end()};
}

TEST(ElementwiseKernelTest, IntegerArithmeticWrapsAndDivisionByZeroIsSafe) {
  const Tensor a = Tensor::fromVector<uint8_t>({3}, {250, 7, 9});
  const Tensor b = Tensor::fromVector<uint8_t>({3}, {10, 0, 2});
  EXPECT_EQ(values<uint8_t>(OpRun{"Add"}.run1({&a, &b})), (std::vector<uint8_t>{4, 7, 11}));
  EXPECT_EQ(values<uint8_t>(OpRun{"Div"}.run1({&a, &b})), (std::vector<uint8_t>{25, 0, 4}));
  const Tensor x = Tensor::fromVector<int32_t>({4}, {-7, 7, -7, 7});
  const Tensor y = Tensor::fromVector<int32_t>({4}, {3, -3, -3, 3});
  EXPECT_EQ(values<int32_t>(OpRun{"Mod"}.run1({&x, &y})), (std::vector<int32_t>{2, -2, -1, 1}));
  OpRun fmod{"Mod"};
  fmod.attrs = {Attribute::makeInt("fmod", 1)};
  EXPECT_EQ(values<int32_t>(fmod.run1({&x, &y})), (std::vector<int32_t>{-1, 1, -1, 1}));
}

TEST(ElementwiseKernelTest, PerChannelAddAndComparisonsBroadcast) {
  const Tensor x(DType::kFloat32, {2, 3, 4, 4});
  const Tensor bias = Tensor::fromVector<float>({3, 1, 1}, {1, 2, 3});
  const Tensor y = OpRun{"Add"}.run1({&x, &bias});
  ASSERT_EQ(y.shape(), x.shape());
  for (int64_t i = 0; i < y.numel(); ++i) EXPECT_EQ(y.data<float>()[i], 1 + (i / 16) % 3);
  const Tensor g = OpRun{"Greater"}.run1({&y, &bias});
  ASSERT_EQ(g.dtype(), DType::kBool);
  for (int64_t i = 0; i < g.numel(); ++i) EXPECT_FALSE(g.data<bool>()[i]);
}

TEST(ElementwiseKernelTest, LegacyBroadcastAlignsAtAxis) {
  const Tensor x(DType::kFloat32, {2, 3, 2});
  const Tensor b = Tensor::fromVector<float>({3}, {1, 2, 3});
  OpRun legacy("Add", 6, {Attribute::makeInt("broadcast", 1), Attribute::makeInt("axis", 1)});
  EXPECT_EQ(values<float>(legacy.run1({&x, &b})),
            (std::vector<float>{1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3}));
}

TEST(ElementwiseKernelTest, VariadicOpsBroadcast) {
  const Tensor a = Tensor::fromVector<float>({2, 1}, {1, 2});
  const Tensor b = Tensor::fromVector<float>({3}, {10, 20, 30});
  const Tensor c = Tensor::fromVector<float>({}, {4});
  EXPECT_EQ(values<float>(OpRun{"Mean"}.run1({&a, &b, &c})),
            (std::vector<float>{5, 25.f / 3, 35.f / 3, 16.f / 3, 26.f / 3, 12}));
  EXPECT_EQ(values<float>(OpRun{"Max"}.run1({&a, &b, &c})),
            (std::vector<float>{10, 20, 30, 10, 20, 30}));
  EXPECT_EQ(values<float>(OpRun{"Sum"}.run1({&c})), (std::vector<float>{4}));
}

TEST(ElementwiseKernelTest, ClipAttributeAndInputForms) {
  const Tensor x = Tensor::fromVector<float>({4}, {-3, -0.5f, 0.5f, 3});
  OpRun v6{"Clip", 6, {Attribute::makeFloat("min", -1), Attribute::makeFloat("max", 1)}};
  EXPECT_EQ(values<float>(v6.run1({&x})), (std::vector<float>{-1, -0.5f, 0.5f, 1}));
  const Tensor hi = Tensor::fromVector<float>({}, {0});
  EXPECT_EQ(values<float>(OpRun{"Clip", 13}.run1({&x, nullptr, &hi})),
            (std::vector<float>{-3, -0.5f, 0, 0}));
  EXPECT_EQ(values<float>(OpRun{"Clip", 13}.run1({&x})), values<float>(x));
}

TEST(ElementwiseKernelTest, CastTruncatesTowardZeroAndHandlesHalfAndStrings) {
  const Tensor x = Tensor::fromVector<float>({4}, {-1.7f, 2.9f, 0.f, 0.25f});
  OpRun to_int{"Cast", 13, {Attribute::makeInt("to", static_cast<int64_t>(DType::kInt32))}};
  EXPECT_EQ(values<int32_t>(to_int.run1({&x})), (std::vector<int32_t>{-1, 2, 0, 0}));
  OpRun to_bool{"Cast", 13, {Attribute::makeInt("to", static_cast<int64_t>(DType::kBool))}};
  EXPECT_EQ(values<bool>(to_bool.run1({&x})), (std::vector<bool>{true, true, false, true}));
  OpRun to_half{"Cast", 13, {Attribute::makeInt("to", static_cast<int64_t>(DType::kFloat16))}};
  const Tensor h = to_half.run1({&x});
  ASSERT_EQ(h.dtype(), DType::kFloat16);
  OpRun to_float{"Cast", 13, {Attribute::makeInt("to", static_cast<int64_t>(DType::kFloat32))}};
  const Tensor back = to_float.run1({&h});
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(back.data<float>()[i], x.data<float>()[i], 2e-3);
  OpRun to_str{"Cast", 13, {Attribute::makeInt("to", static_cast<int64_t>(DType::kString))}};
  const Tensor s = to_str.run1({&x});
  EXPECT_EQ(s.strings(), (std::vector<std::string>{"-1.7", "2.9", "0.0", "0.25"}));
  EXPECT_EQ(values<float>(to_float.run1({&s})), values<float>(x));
}

TEST(ElementwiseKernelTest, HalfInputsComputeInFloat) {
  OpRun to_half{"Cast", 13, {Attribute::makeInt("to", static_cast<int64_t>(DType::kFloat16))}};
  const Tensor a32 = Tensor::fromVector<float>({3}, {1, 2, 3});
  const Tensor a = to_half.run1({&a32});
  const Tensor y = OpRun{"Mul"}.run1({&a, &a});
  ASSERT_EQ(y.dtype(), DType::kFloat16);
  EXPECT_EQ(y.elementAsDouble(2), 9.0);
}

TEST(ElementwiseKernelTest, WhereAndPowMixedTypes) {
  Tensor c(DType::kBool, {2, 1});
  c.mutableData<bool>()[0] = true;
  const Tensor x = Tensor::fromVector<int64_t>({3}, {1, 2, 3});
  const Tensor y = Tensor::fromVector<int64_t>({}, {-1});
  EXPECT_EQ(values<int64_t>(OpRun{"Where"}.run1({&c, &x, &y})),
            (std::vector<int64_t>{1, 2, 3, -1, -1, -1}));
  const Tensor base = Tensor::fromVector<int32_t>({3}, {2, 3, 4});
  const Tensor e = Tensor::fromVector<float>({3}, {2, 0.5f, 3});
  EXPECT_EQ(values<int32_t>(OpRun{"Pow"}.run1({&base, &e})), (std::vector<int32_t>{4, 1, 64}));
}

TEST(ElementwiseKernelTest, VectorisedTranscendentalsMatchStd) {
  const Tensor x = Tensor::fromVector<float>({40000}, randomFloats(40000, 9));
  Tensor ax = Tensor::fromVector<float>({40000}, randomFloats(40000, 9));
  for (auto& v : ax.mutableData<float>()) v = std::fabs(v);
  auto check = [&](const char* op, float (*ref)(float), const Tensor& in) {
    const Tensor y = OpRun{op, 17, {}, 4}.run1({&in});
    for (int64_t i = 0; i < in.numel(); ++i) {
      const float want = ref(in.data<float>()[i]);
      ASSERT_NEAR(y.data<float>()[i], want, 1e-6f + 1e-5f * std::fabs(want)) << op << " " << i;
    }
  };
  check(
      "Exp", [](float v) { return std::exp(v); }, x);
  check(
      "Tanh", [](float v) { return std::tanh(v); }, x);
  check(
      "Sigmoid", [](float v) { return 1.f / (1.f + std::exp(-v)); }, x);
  check(
      "Log", [](float v) { return std::log(v); }, ax);
  check(
      "Sqrt", [](float v) { return std::sqrt(v); }, ax);
}

// ---------------------------------------------------------------------------------------------
// Reductions and softmax

// Naive reduction of x [2,3,4] over `axes` with keepdims.
std::vector<float> naiveReduce(const std::vector<float>& x, const Shape& shape,
                               const std::vector<int>& axes, bool mean) {
  Shape out = shape;
  for (int a : axes) out[a] = 1;
  std::vector<float> acc(static_cast<size_t>(shapeNumel(out)), 0.f);
  for (int64_t i = 0; i < shapeNumel(shape); ++i) {
    auto idx = unravel(i, shape);
    for (int a : axes) idx[a] = 0;
    int64_t o = 0;
    for (size_t d = 0; d < out.size(); ++d) o = o * out[d] + idx[d];
    acc[o] += x[i];
  }
  if (mean) {
    int64_t n = 1;
    for (int a : axes) n *= shape[a];
    for (auto& v : acc) v /= static_cast<float>(n);
  }
  return acc;
}

TEST(ReduceKernelTest, AxisLayoutsMatchNaiveReference) {
  const Shape shape{3, 5, 7, 9};
  const auto xs = randomFloats(shapeNumel(shape), 11);
  const Tensor x = Tensor::fromVector<float>(shape, xs);
  for (const std::vector<int>& axes :
       std::vector<std::vector<int>>{{2, 3}, {1}, {0}, {3}, {0, 2}, {1, 3}, {0, 1, 2, 3}}) {
    std::vector<int64_t> ax(axes.begin(), axes.end());
    const Tensor axes_t = Tensor::fromVector<int64_t>({static_cast<int64_t>(ax.size())}, ax);
    const Tensor sum = OpRun{"ReduceSum", 13}.run1({&x, &axes_t});
    OpRun mean_op{"ReduceMean", 13, {Attribute::makeInts("axes", ax)}};
    const Tensor mean = mean_op.run1({&x});
    const auto want_sum = naiveReduce(xs, shape, axes, false);
    const auto want_mean = naiveReduce(xs, shape, axes, true);
    ASSERT_EQ(sum.numel(), static_cast<int64_t>(want_sum.size()));
    for (size_t i = 0; i < want_sum.size(); ++i) {
      EXPECT_NEAR(sum.data<float>()[i], want_sum[i], 1e-4f * (1 + std::fabs(want_sum[i])));
      EXPECT_NEAR(mean.data<float>()[i], want_mean[i], 1e-5f * (1 + std::fabs(want_mean[i])));
    }
  }
}

TEST(ReduceKernelTest, KeepdimsAndEmptyAxes) {
  const Tensor x = Tensor::fromVector<float>({2, 3}, {1, 2, 3, 4, 5, 6});
  OpRun no_keep{
      "ReduceMax", 13, {Attribute::makeInts("axes", {1}), Attribute::makeInt("keepdims", 0)}};
  const Tensor m = no_keep.run1({&x});
  EXPECT_EQ(m.shape(), (Shape{2}));
  EXPECT_EQ(values<float>(m), (std::vector<float>{3, 6}));
  const Tensor empty = Tensor::fromVector<int64_t>({0}, {});
  EXPECT_EQ(values<float>(OpRun{"ReduceSum", 13}.run1({&x, &empty})), (std::vector<float>{21}));
  OpRun noop{"ReduceSum", 13, {Attribute::makeInt("noop_with_empty_axes", 1)}};
  EXPECT_EQ(noop.run1({&x, &empty}).shape(), x.shape());
  OpRun lse{"ReduceLogSumExp", 13, {Attribute::makeInts("axes", {1})}};
  const Tensor big = Tensor::fromVector<float>({1, 2}, {1000, 1000});
  EXPECT_NEAR(lse.run1({&big}).data<float>()[0], 1000 + std::log(2.f), 1e-3);
}

TEST(ReduceKernelTest, ArgMaxSelectLastIndex) {
  const Tensor x = Tensor::fromVector<float>({2, 3}, {1, 5, 5, 2, 2, 0});
  OpRun first{"ArgMax", 13, {Attribute::makeInt("axis", 1)}};
  EXPECT_EQ(values<int64_t>(first.run1({&x})), (std::vector<int64_t>{1, 0}));
  OpRun last{
      "ArgMax", 13, {Attribute::makeInt("axis", 1), Attribute::makeInt("select_last_index", 1)}};
  EXPECT_EQ(values<int64_t>(last.run1({&x})), (std::vector<int64_t>{2, 1}));
  OpRun amin{"ArgMin", 13, {Attribute::makeInt("axis", 0), Attribute::makeInt("keepdims", 0)}};
  const Tensor r = amin.run1({&x});
  EXPECT_EQ(r.shape(), (Shape{3}));
  EXPECT_EQ(values<int64_t>(r), (std::vector<int64_t>{0, 1, 1}));
}

TEST(ReduceKernelTest, SoftmaxLegacyFlattensAndNewUsesOneAxis) {
  const Shape shape{2, 3, 4};
  const Tensor x = Tensor::fromVector<float>(shape, randomFloats(24, 13));
  OpRun legacy{"Softmax", 11, {Attribute::makeInt("axis", 1)}};
  OpRun single{"Softmax", 13, {Attribute::makeInt("axis", 1)}};
  const Tensor a = legacy.run1({&x}), b = single.run1({&x});
  for (int n = 0; n < 2; ++n) {
    float s = 0;
    for (int i = 0; i < 12; ++i) s += a.data<float>()[n * 12 + i];
    EXPECT_NEAR(s, 1.f, 1e-5f);  // normalised over the 12 trailing elements
    for (int w = 0; w < 4; ++w) {
      float t = 0;
      for (int c = 0; c < 3; ++c) t += b.data<float>()[n * 12 + c * 4 + w];
      EXPECT_NEAR(t, 1.f, 1e-5f);  // normalised over the 3 channels only
    }
  }
  const Tensor huge = Tensor::fromVector<float>({1, 2}, {1e30f, 1e30f});
  const Tensor ls = OpRun{"LogSoftmax", 13}.run1({&huge});
  EXPECT_NEAR(ls.data<float>()[0], -std::log(2.f), 1e-6);
}

// ---------------------------------------------------------------------------------------------
// Resize

TEST(ResizeKernelTest, NearestUpsampleEveryElementWritten) {
  const Tensor x = Tensor::fromVector<float>({1, 2, 2, 2}, {1, 2, 3, 4, 5, 6, 7, 8});
  const Tensor scales = Tensor::fromVector<float>({4}, {1, 1, 2, 3});
  const Tensor y = OpRun{"Resize",
                         13,
                         {Attribute::makeString("mode", "nearest"),
                          Attribute::makeString("coordinate_transformation_mode", "asymmetric"),
                          Attribute::makeString("nearest_mode", "floor")}}
                       .run1({&x, nullptr, &scales});
  ASSERT_EQ(y.shape(), (Shape{1, 2, 4, 6}));
  for (int64_t i = 0; i < y.numel(); ++i) {
    const auto idx = unravel(i, y.shape());
    EXPECT_EQ(y.data<float>()[i], x.data<float>()[idx[1] * 4 + (idx[2] / 2) * 2 + idx[3] / 3]);
  }
  const Tensor up = OpRun{"Upsample", 9}.run1({&x, &scales});
  EXPECT_EQ(values<float>(up), values<float>(y));
  const Tensor xi = Tensor::fromVector<uint8_t>({1, 1, 1, 2}, {7, 9});
  const Tensor sizes = Tensor::fromVector<int64_t>({4}, {1, 1, 2, 4});
  const Tensor yi = OpRun{"Resize", 13}.run1({&xi, nullptr, nullptr, &sizes});
  EXPECT_EQ(values<uint8_t>(yi), (std::vector<uint8_t>{7, 7, 9, 9, 7, 7, 9, 9}));
}

TEST(ResizeKernelTest, LegacyUpsampleAndResize10AreAsymmetric) {
  const Tensor x = Tensor::fromVector<float>({1, 1, 1, 2}, {0, 3});
  OpRun up7(
      "Upsample", 7,
      {Attribute::makeFloats("scales", {1, 1, 1, 3}), Attribute::makeString("mode", "linear")});
  EXPECT_EQ(values<float>(up7.run1({&x})), (std::vector<float>{0, 1, 2, 3, 3, 3}));
  const Tensor scales = Tensor::fromVector<float>({4}, {1, 1, 1, 3});
  EXPECT_EQ(values<float>(OpRun("Resize", 10).run1({&x, &scales})),
            (std::vector<float>{0, 0, 0, 3, 3, 3}));
}

TEST(ResizeKernelTest, BilinearAlignCornersAndHalfPixel) {
  const Tensor x = Tensor::fromVector<float>({1, 1, 2, 2}, {0, 1, 2, 3});
  const Tensor sizes = Tensor::fromVector<int64_t>({4}, {1, 1, 3, 3});
  OpRun ac{"Resize",
           13,
           {Attribute::makeString("mode", "linear"),
            Attribute::makeString("coordinate_transformation_mode", "align_corners")}};
  EXPECT_EQ(values<float>(ac.run1({&x, nullptr, nullptr, &sizes})),
            (std::vector<float>{0, 0.5f, 1, 1, 1.5f, 2, 2, 2.5f, 3}));
  const Tensor scales = Tensor::fromVector<float>({4}, {1, 1, 2, 2});
  OpRun hp{"Resize", 13, {Attribute::makeString("mode", "linear")}};
  const Tensor y = hp.run1({&x, nullptr, &scales});
  ASSERT_EQ(y.shape(), (Shape{1, 1, 4, 4}));
  // Row 0 of the half-pixel result: x = 0, 0.25, 0.75, 1 along the width.
  EXPECT_EQ(values<float>(y)[0], 0.f);
  EXPECT_FLOAT_EQ(values<float>(y)[1], 0.25f);
  EXPECT_FLOAT_EQ(values<float>(y)[2], 0.75f);
  EXPECT_EQ(values<float>(y)[3], 1.f);
  EXPECT_EQ(values<float>(y)[15], 3.f);
}

}  // namespace
}  // namespace nnc::exec
