// Kernels of ops that detectors and transformers end with (NonMaxSuppression, RoiAlign, Einsum,
// GridSample) against ONNX Runtime on seeded random inputs chosen to reach the corner cases the
// ONNX backend tests (exec_backend_test.cc) leave out: tied scores, a score equal to the
// threshold, degenerate boxes, broadcasting and repeated labels, out-of-range sample points.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "model_text.h"
#include "nncompress/exec/executor.h"
#include "ort_util.h"
#include "random_tensor.h"

namespace nnc {
namespace {

using Inputs = std::vector<std::pair<std::string, Tensor>>;

// Runs `text` in our executor and `ort_text` (default: the same model) in ORT; returns {ours,
// ORT's} outputs, in the models' output order.
std::pair<std::vector<Tensor>, std::vector<Tensor>> runBothAll(const std::string& text,
                                                               const Inputs& inputs,
                                                               const std::string& ort_text = "") {
  testing::TempDir dir;
  Model model = testing::parseModelText(text);
  const auto path = dir / "m.onnx";
  if (ort_text.empty()) {
    EXPECT_TRUE(saveModel(model, path).isOk());
  } else {
    EXPECT_TRUE(saveModel(testing::parseModelText(ort_text), path).isOk());
  }
  auto ex = exec::Executor::create(model);
  EXPECT_TRUE(ex.isOk()) << ex.status().toString();
  if (!ex.isOk()) return {};
  std::vector<Tensor> feeds;
  for (const auto& [name, t] : inputs) feeds.push_back(t);
  auto ours = (*ex)->run(feeds);
  EXPECT_TRUE(ours.isOk()) << ours.status().toString();
  auto ort = testing::runOrt(path, inputs, dir);
  EXPECT_TRUE(ort.isOk()) << ort.status().toString();
  if (!ours.isOk() || !ort.isOk()) return {};
  return {std::move(ours).value(), std::move(ort).value()};
}

// Runs `text` in our executor and in ORT; returns {ours, ORT's} first output.
std::pair<Tensor, Tensor> runBoth(const std::string& text, const Inputs& inputs) {
  auto [ours, ort] = runBothAll(text, inputs);
  if (ours.empty() || ort.empty()) return {};
  return {ours.front(), ort.front()};
}

void expectSameIndices(const Tensor& ours, const Tensor& ort) {
  ASSERT_EQ(ours.dtype(), DType::kInt64);
  ASSERT_EQ(ort.dtype(), DType::kInt64);
  ASSERT_EQ(shapeToString(ours.shape()), shapeToString(ort.shape()));
  EXPECT_EQ(ours.toInt64Vector(), ort.toInt64Vector());
}

// Boxes on a coarse grid so that many overlap; scores from a few levels so that many tie.
Inputs nmsInputs(uint32_t seed, bool center_point) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> cell(0, 5), level(0, 6);
  Tensor boxes(DType::kFloat32, {2, 40, 4}), scores(DType::kFloat32, {2, 3, 40});
  auto b = boxes.mutableData<float>();
  for (size_t i = 0; i < b.size(); i += 4) {
    const float y = cell(rng) * 0.1f, x = cell(rng) * 0.1f, h = cell(rng) * 0.1f,
                w = cell(rng) * 0.1f;  // h or w 0: a degenerate box
    if (center_point) {
      b[i] = x, b[i + 1] = y, b[i + 2] = w, b[i + 3] = h;
    } else {  // corners in either diagonal order
      const bool flip = cell(rng) % 2;
      b[i] = flip ? y + h : y, b[i + 1] = x, b[i + 2] = flip ? y : y + h, b[i + 3] = x + w;
    }
  }
  for (float& s : scores.mutableData<float>()) s = level(rng) * 0.125f;
  return {{"boxes", boxes}, {"scores", scores}};
}

TEST(ExecOrtOps, NonMaxSuppressionMatchesOrt) {
  ASSERT_TRUE(testing::ortAvailable()) << "onnxruntime-node missing: run tools/bootstrap.sh";
  for (int center = 0; center <= 1; ++center) {
    for (const char* limits : {"int64 m = {5}, float iou = {0.3}, float st = {0.25}",
                               "int64 m = {100}, float iou = {0.0}, float st = {0.0}",
                               "int64 m = {3}, float iou = {0.7}, float st = {-1.0}"}) {
      SCOPED_TRACE(std::string(limits) + ", center_point_box " + std::to_string(center));
      const std::string text = R"(<ir_version: 8, opset_import: ["" : 11]>
        g (float[2, 40, 4] boxes, float[2, 3, 40] scores) => (int64[K, 3] sel)
        <)" + std::string(limits) +
                               R"(> {
          sel = NonMaxSuppression<center_point_box = )" +
                               std::to_string(center) + R"(>(boxes, scores, m, iou, st)
        })";
      auto [ours, ort] = runBoth(text, nmsInputs(7 + center, center == 1));
      expectSameIndices(ours, ort);
      EXPECT_GT(ours.dim(0), 0);
    }
  }
}

// Without the optional inputs nothing is selected (max_output_boxes_per_class defaults to 0).
TEST(ExecOrtOps, NonMaxSuppressionWithoutLimitsSelectsNothing) {
  ASSERT_TRUE(testing::ortAvailable());
  const std::string text = R"(<ir_version: 8, opset_import: ["" : 10]>
    g (float[2, 40, 4] boxes, float[2, 3, 40] scores) => (int64[K, 3] sel) {
      sel = NonMaxSuppression(boxes, scores)
    })";
  auto [ours, ort] = runBoth(text, nmsInputs(3, false));
  expectSameIndices(ours, ort);
  EXPECT_EQ(ours.dim(0), 0);
}

void expectCloseFloats(const Tensor& ours, const Tensor& ort, double tol) {
  ASSERT_EQ(shapeToString(ours.shape()), shapeToString(ort.shape()));
  EXPECT_LE(testing::relativeMaxError(ours, ort), tol);
}

struct EinsumCase {
  const char* equation;
  Shape a, b;
};

// Attention products, batched matmul, broadcast ellipses, a diagonal, the implicit form, a full
// sum, and three inputs.
TEST(ExecOrtOps, EinsumMatchesOrt) {
  ASSERT_TRUE(testing::ortAvailable());
  const std::vector<EinsumCase> cases = {
      {"bhqd,bhkd->bhqk", {2, 3, 5, 8}, {2, 3, 7, 8}},
      {"bhqk,bhkd->bhqd", {2, 3, 5, 7}, {2, 3, 7, 8}},
      {"bij,bjk->bik", {3, 4, 6}, {3, 6, 5}},
      {"...ij,jk->...ik", {2, 3, 4, 6}, {6, 5}},
      {"...ij,...jk->...ik", {2, 1, 4, 6}, {2, 3, 6, 5}},
      {"bii,bi->bi", {2, 5, 5}, {2, 5}},
      {"ij,jk", {4, 6}, {6, 3}},
      {"ij,ij->", {4, 6}, {4, 6}},
      {"i,j->ij", {4}, {6}},
  };
  uint32_t seed = 1;
  for (const EinsumCase& c : cases) {
    SCOPED_TRACE(c.equation);
    auto dims = [](const Shape& s) {
      std::string t;
      for (int64_t d : s) t += (t.empty() ? "" : ", ") + std::to_string(d);
      return t;
    };
    const std::string text = R"(<ir_version: 8, opset_import: ["" : 13]>
      g (float[)" + dims(c.a) +
                             R"(] a, float[)" + dims(c.b) +
                             R"(] b) => (float y) {
        y = Einsum<equation = ")" +
                             c.equation + R"(">(a, b)
      })";
    auto [ours, ort] = runBoth(text, {{"a", testing::randomTensor(c.a, seed++)},
                                      {"b", testing::randomTensor(c.b, seed++)}});
    expectCloseFloats(ours, ort, 1e-5);
  }
  const std::string three = R"(<ir_version: 8, opset_import: ["" : 12]>
    g (float[3, 4] a, float[4, 5] b, float[5, 2] c) => (float y) {
      y = Einsum<equation = "ij,jk,kl->il">(a, b, c)
    })";
  auto [ours, ort] = runBoth(three, {{"a", testing::randomTensor({3, 4}, 11u)},
                                     {"b", testing::randomTensor({4, 5}, 12u)},
                                     {"c", testing::randomTensor({5, 2}, 13u)}});
  expectCloseFloats(ours, ort, 1e-5);
}

// Every mode, padding and align_corners at opset 16 and 20, with sample points up to 1.6 times
// outside the image (padding and reflection at work).
TEST(ExecOrtOps, GridSampleMatchesOrt) {
  ASSERT_TRUE(testing::ortAvailable());
  const Tensor x = testing::randomTensor({2, 3, 5, 7}, 21u);
  const Tensor grid = testing::randomTensor({2, 4, 6, 2}, 22u, -1.6f, 1.6f);
  for (int opset : {16, 20}) {
    const std::vector<std::string> modes =
        opset < 20 ? std::vector<std::string>{"bilinear", "nearest", "bicubic"}
                   : std::vector<std::string>{"linear", "nearest", "cubic"};
    for (const std::string& mode : modes)
      for (const char* padding : {"zeros", "border", "reflection"})
        for (int align = 0; align <= 1; ++align) {
          SCOPED_TRACE("opset " + std::to_string(opset) + " " + mode + " " + padding +
                       " align_corners " + std::to_string(align));
          const std::string text = R"(<ir_version: 8, opset_import: ["" : )" +
                                   std::to_string(opset) + R"(]>
            g (float[2, 3, 5, 7] x, float[2, 4, 6, 2] grid) => (float[2, 3, 4, 6] y) {
              y = GridSample<mode = ")" +
                                   mode + R"(", padding_mode = ")" + padding +
                                   R"(", align_corners = )" + std::to_string(align) +
                                   R"(>(x, grid)
            })";
          auto [ours, ort] = runBoth(text, {{"x", x}, {"grid", grid}});
          expectCloseFloats(ours, ort, 1e-5);
        }
  }
}

// Values from 5 levels, so most rows hold ties: equal values must come lower index first.
Tensor tiedValues(Shape shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> level(-2, 2);
  Tensor t(DType::kFloat32, std::move(shape));
  for (float& v : t.mutableData<float>()) v = level(rng) * 0.5f;
  return t;
}

TEST(ExecOrtOps, TopKMatchesOrtWithTies) {
  ASSERT_TRUE(testing::ortAvailable());
  for (const char* attrs : {"axis = 1", "axis = -1, largest = 0", "axis = 0, largest = 1"}) {
    SCOPED_TRACE(attrs);
    const std::string text = R"(<ir_version: 8, opset_import: ["" : 11]>
      g (float[6, 9, 5] x) => (float v, int64 i) <int64[1] k = {3}> {
        v, i = TopK<)" + std::string(attrs) +
                             R"(>(x, k)
      })";
    testing::TempDir dir;
    Model model = testing::parseModelText(text);
    ASSERT_TRUE(saveModel(model, dir / "m.onnx").isOk());
    const Tensor x = tiedValues({6, 9, 5}, 31);
    auto ex = exec::Executor::create(model);
    ASSERT_TRUE(ex.isOk());
    auto ours = (*ex)->run({x});
    auto ort = testing::runOrt(dir / "m.onnx", {{"x", x}}, dir);
    ASSERT_TRUE(ours.isOk() && ort.isOk()) << ort.status().toString();
    expectCloseFloats((*ours)[0], (*ort)[0], 0);
    expectSameIndices((*ours)[1], (*ort)[1]);
  }
}

TEST(ExecOrtOps, NonZeroAndGatherNDMatchOrt) {
  ASSERT_TRUE(testing::ortAvailable());
  Tensor x = tiedValues({3, 4, 5}, 32);
  x.mutableData<float>()[0] = -0.0f;  // zero, though its sign bit is set
  auto [nz, nz_ort] = runBoth(R"(<ir_version: 8, opset_import: ["" : 13]>
    g (float[3, 4, 5] x) => (int64 y) { y = NonZero(x) })",
                              {{"x", x}});
  expectSameIndices(nz, nz_ort);
  Tensor idx(DType::kInt64, {3, 2, 1});
  const std::vector<int64_t> rows = {0, 3, 2, -1, 1, 1};
  std::copy(rows.begin(), rows.end(), idx.mutableData<int64_t>().begin());
  auto [g, g_ort] = runBoth(R"(<ir_version: 8, opset_import: ["" : 13]>
    g (float[3, 4, 5] x, int64[3, 2, 1] idx) => (float y) { y = GatherND<batch_dims = 1>(x, idx) })",
                            {{"x", x}, {"idx", idx}});
  expectCloseFloats(g, g_ort, 0);
  EXPECT_EQ(shapeToString(g.shape()), "[3x2x5]");
}

// Negative and repeated indices; with reduction add the repeats accumulate.
TEST(ExecOrtOps, ScatterElementsMatchesOrt) {
  ASSERT_TRUE(testing::ortAvailable());
  Tensor idx(DType::kInt64, {3, 5});
  std::mt19937 rng(41);
  std::uniform_int_distribution<int64_t> row(-4, 3);
  for (int64_t& v : idx.mutableData<int64_t>()) v = row(rng);
  for (const char* attrs : {"axis = 0", "axis = -2, reduction = \"add\""}) {
    SCOPED_TRACE(attrs);
    const std::string text = R"(<ir_version: 8, opset_import: ["" : 16]>
      g (float[4, 5] x, int64[3, 5] idx, float[3, 5] u) => (float y) {
        y = ScatterElements<)" +
                             std::string(attrs) + R"(>(x, idx, u)
      })";
    // Without a reduction a repeated index is undefined: give the repeats equal updates.
    const bool add = std::string(attrs).find("add") != std::string::npos;
    Tensor u = add ? testing::randomTensor({3, 5}, 42u) : Tensor(DType::kFloat32, {3, 5});
    if (!add)
      for (int64_t i = 0; i < u.numel(); ++i) u.mutableData<float>()[i] = float(i % 5);
    auto [ours, ort] =
        runBoth(text, {{"x", testing::randomTensor({4, 5}, 43u)}, {"idx", idx}, {"u", u}});
    expectCloseFloats(ours, ort, 1e-6);
  }
}

TEST(ExecOrtOps, LayerNormalizationStatisticsMatchOrt) {
  ASSERT_TRUE(testing::ortAvailable());
  const std::string text = R"(<ir_version: 8, opset_import: ["" : 17]>
    g (float[2, 3, 8] x, float[3, 8] s, float[3, 8] b) => (float y, float m, float inv) {
      y, m, inv = LayerNormalization<axis = 1, epsilon = 0.001>(x, s, b)
    })";
  testing::TempDir dir;
  Model model = testing::parseModelText(text);
  ASSERT_TRUE(saveModel(model, dir / "m.onnx").isOk());
  const Inputs in = {{"x", testing::randomTensor({2, 3, 8}, 51u)},
                     {"s", testing::randomTensor({3, 8}, 52u)},
                     {"b", testing::randomTensor({3, 8}, 53u)}};
  auto ex = exec::Executor::create(model);
  ASSERT_TRUE(ex.isOk());
  auto ours = (*ex)->run({in[0].second, in[1].second, in[2].second});
  auto ort = testing::runOrt(dir / "m.onnx", in, dir);
  ASSERT_TRUE(ours.isOk() && ort.isOk()) << ort.status().toString();
  for (size_t i = 0; i < 3; ++i) expectCloseFloats((*ours)[i], (*ort)[i], 1e-5);
  EXPECT_EQ(shapeToString((*ours)[1].shape()), "[2x1x1]");
}

// Same dtype, shape and values (integers and bools exactly; floats within `tol` of ORT's largest
// magnitude).
void expectSameTensor(const Tensor& ours, const Tensor& ort, double tol = 0) {
  ASSERT_EQ(std::string(dtypeName(ours.dtype())), dtypeName(ort.dtype()));
  ASSERT_EQ(shapeToString(ours.shape()), shapeToString(ort.shape()));
  double scale = 1;
  for (int64_t i = 0; i < ort.numel(); ++i)
    scale = std::max(scale, std::abs(ort.elementAsDouble(i)));
  for (int64_t i = 0; i < ort.numel(); ++i)
    ASSERT_NEAR(ours.elementAsDouble(i), ort.elementAsDouble(i), tol * scale) << "element " << i;
}

template <typename T>
Tensor tensorOf(DType dtype, Shape shape, const std::vector<T>& values) {
  Tensor t(dtype, std::move(shape));
  EXPECT_EQ(t.numel(), static_cast<int64_t>(values.size()));
  for (size_t i = 0; i < values.size(); ++i)
    std::memcpy(t.mutableBytes().data() + i * sizeof(T), &values[i], sizeof(T));
  return t;
}

Tensor randomInts(Shape shape, uint32_t seed, int64_t lo, int64_t hi) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> v(lo, hi);
  Tensor t(DType::kInt64, std::move(shape));
  for (int64_t& x : t.mutableData<int64_t>()) x = v(rng);
  return t;
}

// Exclusive and reverse together on a negative axis, with int64 data large enough that a sum in
// int32 or double would differ, and the axis as a 0-D int64 or a 1-D int32 tensor.
TEST(ExecOrtOps, CumSumExclusiveReverseMatchesOrt) {
  ASSERT_TRUE(testing::ortAvailable());
  const Tensor x = randomInts({3, 4, 5}, 61u, -(int64_t{1} << 52), int64_t{1} << 52);
  for (const char* axis : {"int64 axis = {-2}", "int32[1] axis = {-1}", "int64 axis = {-3}"})
    for (const char* attrs : {"exclusive = 1, reverse = 1", "exclusive = 1", "reverse = 1"}) {
      SCOPED_TRACE(std::string(axis) + ", " + attrs);
      const std::string text = R"(<ir_version: 8, opset_import: ["" : 14]>
        g (int64[3, 4, 5] x) => (int64[3, 4, 5] y) <)" +
                               std::string(axis) + R"(> {
          y = CumSum<)" + std::string(attrs) +
                               R"(>(x, axis)
        })";
      auto [ours, ort] = runBoth(text, {{"x", x}});
      expectSameTensor(ours, ort);
    }
}

// Negative indices count from the back from opset 11; indices outside [-depth, depth) give rows of
// off values; a float depth is truncated; the new axis is given from the back.
TEST(ExecOrtOps, OneHotNegativeIndicesAndFloatDepthMatchOrt) {
  ASSERT_TRUE(testing::ortAvailable());
  const Tensor idx = randomInts({3, 5}, 62u, -6, 6);
  for (const char* axis : {"axis = -1", "axis = -2", "axis = 0", "axis = -3"}) {
    SCOPED_TRACE(axis);
    const std::string text = R"(<ir_version: 8, opset_import: ["" : 11]>
      g (int64[3, 5] idx) => (float y) <float depth = {4.7}, float[2] v = {-1.5, 3}> {
        y = OneHot<)" + std::string(axis) +
                             R"(>(idx, depth, v)
      })";
    auto [ours, ort] = runBoth(text, {{"idx", idx}});
    expectSameTensor(ours, ort);
    EXPECT_EQ(ours.numel(), 3 * 5 * 4);
  }
}

// A negative delta, and a range that is empty (delta pointing away from the limit).
TEST(ExecOrtOps, RangeNegativeDeltaAndEmptyMatchOrt) {
  ASSERT_TRUE(testing::ortAvailable());
  struct Case {
    const char* type;
    std::vector<double> start_limit_delta;
    int64_t count;
  };
  for (const Case& c : {Case{"float", {10, 4.5, -1.5}, 4}, Case{"float", {1, 5, -1}, 0},
                        Case{"int32", {10, -3, -4}, 4}, Case{"int32", {2, 2, -1}, 0},
                        Case{"int64", {-3, 7, -2}, 0}}) {
    SCOPED_TRACE(std::string(c.type) + " " + std::to_string(c.start_limit_delta[0]) + " " +
                 std::to_string(c.start_limit_delta[1]) + " " +
                 std::to_string(c.start_limit_delta[2]));
    const std::string t = c.type;
    const std::string text = R"(<ir_version: 8, opset_import: ["" : 11]>
      g ()" + t + " s, " + t +
                             " l, " + t + R"( d) => ()" + t + R"( y) {
        y = Range(s, l, d)
      })";
    Inputs in;
    const char* names[] = {"s", "l", "d"};
    for (int i = 0; i < 3; ++i) {
      const double v = c.start_limit_delta[i];
      in.emplace_back(names[i], t == "float" ? tensorOf<float>(DType::kFloat32, {}, {float(v)})
                                : t == "int32"
                                    ? tensorOf<int32_t>(DType::kInt32, {}, {int32_t(v)})
                                    : tensorOf<int64_t>(DType::kInt64, {}, {int64_t(v)}));
    }
    auto [ours, ort] = runBoth(text, in);
    expectSameTensor(ours, ort);
    EXPECT_EQ(ours.numel(), c.count);
  }
}

// Even sizes put one more channel after than before: floor((size - 1) / 2) before,
// ceil((size - 1) / 2) after. ONNX Runtime's LRN rejects even sizes, so ours is compared with the
// formula built from ORT ops: the window sum of squares as a 1x1 Conv with a banded weight.
TEST(ExecOrtOps, LrnEvenSizeMatchesOrt) {
  ASSERT_TRUE(testing::ortAvailable());
  const Tensor x = testing::randomTensor({2, 7, 3, 4}, 63u, -2.f, 2.f);
  struct Case {
    int size;
    float alpha, beta, bias;
  };
  for (const Case& c : {Case{4, 0.3f, 0.6f, 1.5f}, Case{2, 0.5f, 0.75f, 1.f},
                        Case{6, 0.2f, 0.9f, 2.f}, Case{3, 0.3f, 0.6f, 1.5f}}) {
    SCOPED_TRACE("size " + std::to_string(c.size));
    const std::string attrs =
        "size = " + std::to_string(c.size) + ", alpha = " + std::to_string(c.alpha) +
        ", beta = " + std::to_string(c.beta) + ", bias = " + std::to_string(c.bias);
    const Model model = testing::parseModelText(R"(<ir_version: 8, opset_import: ["" : 13]>
      g (float[2, 7, 3, 4] x) => (float[2, 7, 3, 4] y) {
        y = LRN<)" + attrs + R"(>(x)
      })");
    auto ex = exec::Executor::create(model);
    ASSERT_TRUE(ex.isOk()) << ex.status().toString();
    auto ours = (*ex)->run({x});
    ASSERT_TRUE(ours.isOk()) << ours.status().toString();
    // w[c][k] = 1 for k in [c - floor((size - 1) / 2), c + ceil((size - 1) / 2)].
    const int before = (c.size - 1) / 2, after = c.size - 1 - before;
    std::string w;
    for (int o = 0; o < 7; ++o)
      for (int k = 0; k < 7; ++k)
        w += std::string(w.empty() ? "" : ", ") + (k >= o - before && k <= o + after ? "1" : "0");
    const std::string formula = R"(<ir_version: 8, opset_import: ["" : 13]>
      g (float[2, 7, 3, 4] x) => (float[2, 7, 3, 4] y)
      <float[7, 7, 1, 1] w = {)" +
                                w + R"(}, float k = {)" + std::to_string(c.alpha / c.size) +
                                R"(}, float b = {)" + std::to_string(c.bias) + R"(}, float e = {)" +
                                std::to_string(c.beta) + R"(}> {
        sq = Mul(x, x)
        sum = Conv(sq, w)
        scaled = Mul(sum, k)
        base = Add(scaled, b)
        den = Pow(base, e)
        y = Div(x, den)
      })";
    testing::TempDir dir;
    ASSERT_TRUE(saveModel(testing::parseModelText(formula), dir / "f.onnx").isOk());
    auto ort = testing::runOrt(dir / "f.onnx", {{"x", x}}, dir);
    ASSERT_TRUE(ort.isOk()) << ort.status().toString();
    expectCloseFloats(ours->front(), ort->front(), 1e-5);
    if (c.size % 2 == 1) {  // odd sizes: ORT's own LRN too
      testing::TempDir lrn_dir;
      ASSERT_TRUE(saveModel(model, lrn_dir / "m.onnx").isOk());
      auto ort_lrn = testing::runOrt(lrn_dir / "m.onnx", {{"x", x}}, lrn_dir);
      ASSERT_TRUE(ort_lrn.isOk()) << ort_lrn.status().toString();
      expectCloseFloats(ours->front(), ort_lrn->front(), 1e-5);
    }
  }
}

// A condition shorter than the axis drops the slices past its end; without an axis the input is
// flattened first.
TEST(ExecOrtOps, CompressShortConditionMatchesOrt) {
  ASSERT_TRUE(testing::ortAvailable());
  const Tensor x = randomInts({4, 6}, 64u, -50, 50);
  const Tensor cond = tensorOf<uint8_t>(DType::kBool, {5}, {1, 0, 1, 1, 0});
  for (const char* attrs : {"<axis = 1>", "<axis = -2>", "<axis = 0>", ""}) {
    SCOPED_TRACE(attrs);
    const std::string text = R"(<ir_version: 8, opset_import: ["" : 11]>
      g (int64[4, 6] x, bool[5] c) => (int64 y) {
        y = Compress)" + std::string(attrs) +
                             R"((x, c)
      })";
    auto [ours, ort] = runBoth(text, {{"x", x}, {"c", cond}});
    expectSameTensor(ours, ort);
  }
}

// MaxPool's indices into a 5x5 (odd: the last row and column are in no window) input unpooled
// back to it through output_shape, which the kernel and stride alone cannot recover (4x4).
TEST(ExecOrtOps, MaxUnpoolWithOutputShapeMatchesOrt) {
  ASSERT_TRUE(testing::ortAvailable());
  const std::string text = R"(<ir_version: 8, opset_import: ["" : 11]>
    g (float[2, 3, 5, 5] x) => (float y) <int64[4] shape = {2, 3, 5, 5}> {
      p, i = MaxPool<kernel_shape = [2, 2], strides = [2, 2]>(x)
      y = MaxUnpool<kernel_shape = [2, 2], strides = [2, 2]>(p, i, shape)
    })";
  auto [ours, ort] = runBoth(text, {{"x", testing::randomTensor({2, 3, 5, 5}, 65u)}});
  expectSameTensor(ours, ort);
  EXPECT_EQ(shapeToString(ours.shape()), "[2x3x5x5]");
  const std::string inferred = R"(<ir_version: 8, opset_import: ["" : 11]>
    g (float[1, 2, 7, 5] x) => (float y) {
      p, i = MaxPool<kernel_shape = [3, 2], strides = [2, 1], pads = [1, 0, 1, 1]>(x)
      y = MaxUnpool<kernel_shape = [3, 2], strides = [2, 1], pads = [1, 0, 1, 1]>(p, i)
    })";
  auto [ours2, ort2] = runBoth(inferred, {{"x", testing::randomTensor({1, 2, 7, 5}, 66u)}});
  expectSameTensor(ours2, ort2);
}

// The epsilon of the function body goes to the standard deviation, not the variance: a channel
// of small spread (variance ~1e-7) shows it.
TEST(ExecOrtOps, MeanVarianceNormalizationMatchesOrt) {
  ASSERT_TRUE(testing::ortAvailable());
  Tensor x = testing::randomTensor({2, 3, 4, 5}, 67u, -3.f, 3.f);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t i = 20; i < 40; ++i) x.mutableData<float>()[b * 60 + i] *= 1e-3f;  // channel 1
  for (const char* attrs : {"", "<axes = [0, 2, 3]>", "<axes = [1, -1]>"}) {
    SCOPED_TRACE(attrs);
    const std::string text = R"(<ir_version: 8, opset_import: ["" : 13]>
      g (float[2, 3, 4, 5] x) => (float[2, 3, 4, 5] y) {
        y = MeanVarianceNormalization)" +
                             std::string(attrs) + R"((x)
      })";
    auto [ours, ort] = runBoth(text, {{"x", x}});
    expectCloseFloats(ours, ort, 1e-5);
  }
}

TEST(ExecOrtOps, DetAndReverseSequenceMatchOrt) {
  ASSERT_TRUE(testing::ortAvailable());
  auto [det, det_ort] = runBoth(R"(<ir_version: 8, opset_import: ["" : 11]>
    g (float[2, 3, 4, 4] x) => (float y) { y = Det(x) })",
                                {{"x", testing::randomTensor({2, 3, 4, 4}, 68u, -2.f, 2.f)}});
  expectCloseFloats(det, det_ort, 1e-5);
  EXPECT_EQ(shapeToString(det.shape()), "[2x3]");
  const Tensor lens = tensorOf<int64_t>(DType::kInt64, {4}, {0, 5, 2, 1});
  for (const char* axes : {"time_axis = 1, batch_axis = 0", "time_axis = 0, batch_axis = 1"}) {
    SCOPED_TRACE(axes);
    const bool time_first = axes[12] == '0';
    const Shape shape = time_first ? Shape{5, 4, 3} : Shape{4, 5, 3};
    const std::string dims = time_first ? "5, 4, 3" : "4, 5, 3";
    const std::string text = R"(<ir_version: 8, opset_import: ["" : 10]>
      g (float[)" + dims + R"(] x, int64[4] lens) => (float y) {
        y = ReverseSequence<)" +
                             std::string(axes) + R"(>(x, lens)
      })";
    auto [ours, ort] = runBoth(text, {{"x", testing::randomTensor(shape, 69u)}, {"lens", lens}});
    expectSameTensor(ours, ort);
  }
}

// ---- RoiAlign ----

// X [3, 2, 7, 9] and rois over it: inside, partly outside on either side, under one pixel (the
// RoiAlign-10 clamp), the whole image, fully outside, thin, on the border; images 0, 1 and 2.
Inputs roiAlignInputs() {
  const Tensor rois = tensorOf<float>(DType::kFloat32, {8, 4},
                                      {1.2f,  0.7f,  6.3f,  5.1f,    // inside
                                       -2.5f, -1.8f, 3.4f,  2.9f,    // out at the top left
                                       5.5f,  3.2f,  12.f,  9.5f,    // out at the bottom right
                                       2.3f,  2.6f,  2.7f,  3.f,     // 0.4 x 0.4
                                       0.f,   0.f,   9.f,   7.f,     // the image
                                       -6.f,  -5.f,  -2.5f, -1.5f,   // outside
                                       7.9f,  0.1f,  8.6f,  6.8f,    // thin
                                       0.5f,  6.2f,  8.5f,  6.9f});  // the bottom border
  const Tensor idx = tensorOf<int64_t>(DType::kInt64, {8}, {0, 2, 1, 2, 0, 1, 2, 0});
  return {{"x", testing::randomTensor({3, 2, 7, 9}, 81u, -2.f, 2.f)}, {"rois", rois}, {"idx", idx}};
}

std::string roiAlignText(int opset, const std::string& attrs, int64_t rois = 8,
                         const std::string& type = "float") {
  return R"(<ir_version: 8, opset_import: ["" : )" + std::to_string(opset) + R"(]>
    g ()" +
         type + R"([3, 2, 7, 9] x, )" + type + "[" + std::to_string(rois) + R"(, 4] rois, int64[)" +
         std::to_string(rois) + R"(] idx) => ()" + type + R"( y) {
      y = RoiAlign<output_height = 3, output_width = 4)" +
         (attrs.empty() ? "" : ", " + attrs) + R"(>(x, rois, idx)
    })";
}

// avg and max, sampling_ratio 0 (adaptive) and fixed, half_pixel (16's default) and
// output_half_pixel (explicit at 16, implied at 10), a spatial_scale.
TEST(ExecOrtOps, RoiAlignMatchesOrt) {
  ASSERT_TRUE(testing::ortAvailable());
  const std::pair<int, const char*> cases[] = {
      {16, ""},
      {16, "sampling_ratio = 2"},
      {16, R"(mode = "max")"},
      {16, R"(mode = "max", sampling_ratio = 2)"},
      {16, R"(coordinate_transformation_mode = "output_half_pixel", sampling_ratio = 2)"},
      {16, R"(coordinate_transformation_mode = "output_half_pixel", mode = "max")"},
      {16, "spatial_scale = 0.625, sampling_ratio = 3"},
      {10, ""},
      {10, "sampling_ratio = 2"},
      {10, R"(mode = "max")"},
      {10, R"(mode = "max", sampling_ratio = 1, spatial_scale = 1.5)"},
  };
  const Inputs in = roiAlignInputs();
  for (const auto& [opset, attrs] : cases) {
    SCOPED_TRACE("opset " + std::to_string(opset) + " " + attrs);
    auto [ours, ort] = runBoth(roiAlignText(opset, attrs), in);
    expectSameTensor(ours, ort, 1e-5);
    EXPECT_EQ(shapeToString(ours.shape()), "[8x2x3x4]");
  }
}

// 64 random rois over X [2, 32, 24, 28], 7x7 bins: enough work for the parallel loop over rois.
TEST(ExecOrtOps, RoiAlignManyRoisMatchesOrt) {
  ASSERT_TRUE(testing::ortAvailable());
  std::mt19937 rng(82u);
  std::uniform_real_distribution<float> corner(-4.f, 30.f), size(0.3f, 20.f);
  Tensor rois(DType::kFloat32, {64, 4}), idx(DType::kInt64, {64});
  auto r = rois.mutableData<float>();
  for (int64_t i = 0; i < 64; ++i) {
    r[4 * i] = corner(rng), r[4 * i + 1] = corner(rng);
    r[4 * i + 2] = r[4 * i] + size(rng), r[4 * i + 3] = r[4 * i + 1] + size(rng);
    idx.mutableData<int64_t>()[i] = static_cast<int64_t>(rng() % 2);
  }
  const Inputs in = {
      {"x", testing::randomTensor({2, 32, 24, 28}, rng)}, {"rois", rois}, {"idx", idx}};
  for (const char* attrs : {"", R"(mode = "max", sampling_ratio = 2)"}) {
    SCOPED_TRACE(attrs);
    const std::string text = R"(<ir_version: 8, opset_import: ["" : 16]>
      g (float[2, 32, 24, 28] x, float[64, 4] rois, int64[64] idx) => (float y) {
        y = RoiAlign<output_height = 7, output_width = 7, spatial_scale = 0.8)" +
                             std::string(attrs).insert(0, attrs[0] ? ", " : "") +
                             R"(>(x, rois, idx)
      })";
    auto [ours, ort] = runBoth(text, in);
    expectSameTensor(ours, ort, 1e-5);
  }
}

// X and rois in double, which ORT implements too.
TEST(ExecOrtOps, RoiAlignDoubleMatchesOrt) {
  ASSERT_TRUE(testing::ortAvailable());
  Inputs in = roiAlignInputs();
  for (size_t i = 0; i < 2; ++i) {
    Tensor d(DType::kFloat64, in[i].second.shape());
    for (int64_t k = 0; k < d.numel(); ++k)
      d.mutableData<double>()[k] = in[i].second.elementAsDouble(k);
    in[i].second = d;
  }
  for (const auto& [opset, attrs] :
       {std::pair<int, const char*>{16, ""}, {10, R"(mode = "max")"}}) {
    SCOPED_TRACE("opset " + std::to_string(opset) + " " + attrs);
    auto [ours, ort] = runBoth(roiAlignText(opset, attrs, 8, "double"), in);
    expectSameTensor(ours, ort, 1e-12);
  }
}

// No rois: an empty output of the full shape.
TEST(ExecOrtOps, RoiAlignWithoutRoisMatchesOrt) {
  ASSERT_TRUE(testing::ortAvailable());
  Inputs in = roiAlignInputs();
  in[1].second = Tensor(DType::kFloat32, {0, 4});
  in[2].second = Tensor(DType::kInt64, {0});
  auto [ours, ort] = runBoth(roiAlignText(16, "", 0), in);
  expectSameTensor(ours, ort);
  EXPECT_EQ(shapeToString(ours.shape()), "[0x2x3x4]");
}

// Bad inputs and attributes: an error status when the plan is made or run, never a crash.
TEST(ExecOrtOps, RoiAlignRejectsBadInputs) {
  const Inputs good = roiAlignInputs();
  auto runWith = [&](const std::string& text, int input, Tensor t) {
    Model model = testing::parseModelText(text);
    auto ex = exec::Executor::create(model);
    if (!ex.isOk()) return ex.status();
    std::vector<Tensor> feeds;
    for (const auto& [name, v] : good) feeds.push_back(v);
    if (input >= 0) feeds[input] = std::move(t);
    return (*ex)->run(feeds).status();
  };
  for (int64_t bad : {3, -1}) {
    Tensor idx = good[2].second;
    idx.mutableData<int64_t>()[5] = bad;
    const Status st = runWith(roiAlignText(16, ""), 2, idx);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.toString();
    EXPECT_NE(st.message().find("batch_indices[5]"), std::string::npos) << st.toString();
  }
  Tensor huge = good[1].second;
  // Adaptive sampling of a 1e30-pixel roi (ORT's float to int conversion overflows instead).
  huge.mutableData<float>()[2] = 1e30f;
  EXPECT_FALSE(runWith(roiAlignText(16, ""), 1, huge).isOk());
  for (const char* attrs : {R"(mode = "sum")", R"(coordinate_transformation_mode = "asymmetric")",
                            "sampling_ratio = -1"}) {
    SCOPED_TRACE(attrs);
    EXPECT_EQ(runWith(roiAlignText(16, attrs), -1, {}).code(), StatusCode::kInvalidModel);
  }
  std::string no_rows = roiAlignText(16, "");
  no_rows.replace(no_rows.find("output_height = 3"), 17, "output_height = 0");
  EXPECT_EQ(runWith(no_rows, -1, {}).code(), StatusCode::kInvalidModel);
}

// Reversed rois (x2 < x1 and y2 < y1): with half_pixel and sampling_ratio 0 the adaptive grid
// is empty (0 or negative samples per axis, output 0); otherwise they sample backwards. Reversed
// along one axis only, the grid count is negative: ORT fails, and so do we.
TEST(ExecOrtOps, RoiAlignReversedRoisMatchOrt) {
  ASSERT_TRUE(testing::ortAvailable());
  Inputs in = roiAlignInputs();
  in[1].second = tensorOf<float>(DType::kFloat32, {3, 4},
                                 {6.3f, 5.1f, 1.2f, 0.7f,    // grid -1 x -1
                                  3.f, 3.f, 2.5f, 2.5f,      // grid 0 x 0
                                  8.4f, 6.3f, 1.1f, 0.2f});  // grid -2 x -1
  in[2].second = tensorOf<int64_t>(DType::kInt64, {3}, {0, 1, 2});
  const std::pair<int, const char*> cases[] = {
      {16, ""}, {16, R"(mode = "max")"}, {16, "sampling_ratio = 2"}, {10, ""}};
  for (const auto& [opset, attrs] : cases) {
    SCOPED_TRACE("opset " + std::to_string(opset) + " " + attrs);
    auto [ours, ort] = runBoth(roiAlignText(opset, attrs, 3), in);
    expectSameTensor(ours, ort, 1e-5);
  }
  // Roi 0 becomes (6.3, 0.7, 1.2, 5.1): reversed along x only.
  in[1].second.mutableData<float>()[1] = 0.7f, in[1].second.mutableData<float>()[3] = 5.1f;
  testing::TempDir dir;
  Model model = testing::parseModelText(roiAlignText(16, "", 3));
  ASSERT_TRUE(saveModel(model, dir / "m.onnx").isOk());
  auto ex = exec::Executor::create(model);
  ASSERT_TRUE(ex.isOk()) << ex.status().toString();
  std::vector<Tensor> feeds;
  for (const auto& [name, t] : in) feeds.push_back(t);
  const Status st = (*ex)->run(feeds).status();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.toString();
  EXPECT_FALSE(testing::runOrt(dir / "m.onnx", in, dir).isOk());
}

// ---- RNN, GRU, LSTM ----

constexpr int64_t kSteps = 5, kBatch = 4, kInput = 3, kHidden = 6;

std::string dimsText(const Shape& s) {
  std::string t;
  for (int64_t d : s) t += (t.empty() ? "" : ", ") + std::to_string(d);
  return t;
}

// Every input of `op` with `directions`: seeded random X (batch first when `batch_first`),
// weights, biases, initial states and LSTM peepholes, and the lengths `lens`.
Inputs recurrentInputs(const std::string& op, int64_t directions, const std::vector<int32_t>& lens,
                       bool batch_first, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t gates = op == "LSTM" ? 4 : op == "GRU" ? 3 : 1;
  const Shape state =
      batch_first ? Shape{kBatch, directions, kHidden} : Shape{directions, kBatch, kHidden};
  Inputs in;
  in.push_back(
      {"x", testing::randomTensor(
                batch_first ? Shape{kBatch, kSteps, kInput} : Shape{kSteps, kBatch, kInput}, rng)});
  in.push_back({"w", testing::randomTensor({directions, gates * kHidden, kInput}, rng)});
  in.push_back({"r", testing::randomTensor({directions, gates * kHidden, kHidden}, rng)});
  in.push_back({"b", testing::randomTensor({directions, 2 * gates * kHidden}, rng)});
  in.push_back({"lens", tensorOf<int32_t>(DType::kInt32, {kBatch}, lens)});
  in.push_back({"h0", testing::randomTensor(state, rng)});
  if (op == "LSTM") {
    in.push_back({"c0", testing::randomTensor(state, rng)});
    in.push_back({"p", testing::randomTensor({directions, 3 * kHidden}, rng)});
  }
  return in;
}

// A graph of one `op` node reading every input in `in`, with outputs y, yh (and yc for LSTM).
// With `transposed` (for ORT, which has no layout 1), x, h0 and c0 come batch first and pass
// through Transposes into a layout-0 node, and its outputs are transposed back to batch first.
std::string recurrentText(const std::string& op, const std::string& attrs, int opset,
                          const Inputs& in, bool transposed = false) {
  const bool lstm = op == "LSTM";
  std::string signature, args, body;
  for (const auto& [name, t] : in) {
    signature += (signature.empty() ? "" : ", ") +
                 std::string(t.dtype() == DType::kInt32 ? "int32[" : "float[") +
                 dimsText(t.shape()) + "] " + name;
    const bool swap = transposed && (name == "x" || name == "h0" || name == "c0");
    if (swap) body += name + "_t = Transpose<perm = [1, 0, 2]>(" + name + ")\n";
    args += (args.empty() ? "" : ", ") + name + (swap ? "_t" : "");
  }
  const std::string outs = lstm ? "y, yh, yc" : "y, yh";
  const std::string node_outs = transposed ? (lstm ? "y_t, yh_t, yc_t" : "y_t, yh_t") : outs;
  body += node_outs + " = " + op + "<hidden_size = " + std::to_string(kHidden) + ", " + attrs +
          ">(" + args + ")\n";
  if (transposed) {
    body += "y = Transpose<perm = [2, 0, 1, 3]>(y_t)\nyh = Transpose<perm = [1, 0, 2]>(yh_t)\n";
    if (lstm) body += "yc = Transpose<perm = [1, 0, 2]>(yc_t)\n";
  }
  return R"(<ir_version: 8, opset_import: ["" : )" + std::to_string(opset) + "]>\ng (" + signature +
         ") => (float y, float yh" + (lstm ? ", float yc" : "") + ") {\n" + body + "}";
}

// Every output (Y, Y_h, Y_c) against ORT's.
void expectSameOutputs(const std::string& text, const Inputs& in,
                       const std::string& ort_text = "") {
  auto [ours, ort] = runBothAll(text, in, ort_text);
  ASSERT_EQ(ours.size(), ort.size());
  ASSERT_FALSE(ours.empty());
  for (size_t i = 0; i < ours.size(); ++i) {
    SCOPED_TRACE("output " + std::to_string(i));
    expectSameTensor(ours[i], ort[i], 1e-5);
  }
}

// Lengths of 5 (all steps), 3, 1 and 0: the reverse direction starts at each entry's own last
// step, Y is zero past the length, Y_h and Y_c hold the last valid step (zero for length 0).
const std::vector<int32_t> kLens = {5, 3, 1, 0};
// ORT's RNN reads the step before the first for Y_h at length 0, so RNN tests leave 0 out.
const std::vector<int32_t> kRnnLens = {5, 3, 1, 2};

// Bidirectional with lengths, initial states and peepholes; reverse with input_forget and clip.
TEST(ExecOrtOps, LstmMatchesOrt) {
  ASSERT_TRUE(testing::ortAvailable());
  for (const char* attrs : {R"(direction = "bidirectional")",
                            R"(direction = "reverse", input_forget = 1, clip = 0.8)"}) {
    SCOPED_TRACE(attrs);
    const int64_t dirs = std::string(attrs).find("bidi") != std::string::npos ? 2 : 1;
    const Inputs in = recurrentInputs("LSTM", dirs, kLens, false, 71u);
    expectSameOutputs(recurrentText("LSTM", attrs, 14, in), in);
  }
}

// linear_before_reset 0 and 1 (where Rbh goes inside the reset product), both directions.
TEST(ExecOrtOps, GruLinearBeforeResetMatchesOrt) {
  ASSERT_TRUE(testing::ortAvailable());
  for (int lbr = 0; lbr <= 1; ++lbr) {
    SCOPED_TRACE("linear_before_reset " + std::to_string(lbr));
    const Inputs in = recurrentInputs("GRU", 2, kLens, false, 72u + lbr);
    const std::string attrs =
        R"(direction = "bidirectional", linear_before_reset = )" + std::to_string(lbr);
    expectSameOutputs(recurrentText("GRU", attrs, 7, in), in);
  }
}

// Reverse with clip (pre-activations reach about 4, so 0.5 bites), then other activations.
TEST(ExecOrtOps, RnnReverseClipMatchesOrt) {
  ASSERT_TRUE(testing::ortAvailable());
  for (const char* attrs :
       {R"(direction = "reverse", clip = 0.5)",
        R"(direction = "bidirectional", activations = ["LeakyRelu", "HardSigmoid"],
           activation_alpha = [0.2, 0.3], activation_beta = [0.4])"}) {
    SCOPED_TRACE(attrs);
    const int64_t dirs = std::string(attrs).find("bidi") != std::string::npos ? 2 : 1;
    const Inputs in = recurrentInputs("RNN", dirs, kRnnLens, false, 74u);
    expectSameOutputs(recurrentText("RNN", attrs, 14, in), in);
  }
}

// layout 1 (batch first) against ORT's layout 0 between Transposes.
TEST(ExecOrtOps, RecurrentBatchFirstLayoutMatchesOrt) {
  ASSERT_TRUE(testing::ortAvailable());
  for (const char* op : {"LSTM", "GRU", "RNN"}) {
    SCOPED_TRACE(op);
    const Inputs in =
        recurrentInputs(op, 2, std::string(op) == "RNN" ? kRnnLens : kLens, true, 75u);
    const std::string attrs = R"(direction = "bidirectional")";
    expectSameOutputs(recurrentText(op, attrs + ", layout = 1", 14, in), in,
                      recurrentText(op, attrs, 14, in, true));
  }
}

// A forward RNN over X [2, 1, 3] of `type` with hidden size 4.
Model smallRnn(int opset, const std::string& type, const std::string& attrs = "") {
  const std::string& t = type;
  return testing::parseModelText(R"(<ir_version: 8, opset_import: ["" : )" + std::to_string(opset) +
                                 "]>\ng (" + t + "[2, 1, 3] x, " + t + "[1, 4, 3] w, " + t +
                                 "[1, 4, 4] r) => (" + t + " y) {\ny = RNN<hidden_size = 4" +
                                 attrs + ">(x, w, r)\n}");
}

// Versions, types and activations the kernels do not implement: an unsupported status when the
// plan is made or run, never a crash.
TEST(ExecOrtOps, RecurrentRefusesWhatItDoesNotImplement) {
  struct Case {
    int opset;
    const char* type;
    const char* attrs;
  };
  const Case cases[] = {{1, "float", ""},
                        {6, "float", ""},
                        {14, "double", ""},
                        {14, "float", R"(, activations = ["Affine"])"},
                        {14, "float", R"(, activations = ["Swish"])"}};
  for (const Case& c : cases) {
    SCOPED_TRACE(std::to_string(c.opset) + " " + c.type + c.attrs);
    Model model = smallRnn(c.opset, c.type, c.attrs);
    auto ex = exec::Executor::create(model);
    Status st = ex.status();
    if (ex.isOk()) {
      Tensor x(std::string(c.type) == "double" ? DType::kFloat64 : DType::kFloat32, {2, 1, 3});
      Tensor w(x.dtype(), {1, 4, 3}), r(x.dtype(), {1, 4, 4});
      st = (*ex)->run({x, w, r}).status();
    }
    EXPECT_EQ(st.code(), StatusCode::kUnsupported) << st.toString();
  }
  // Version 22 (bfloat16) is past what the loader reads; the kernel refuses it too.
  Model model = smallRnn(14, "float");
  const Node& node = *model.graph->nodes().front();
  const exec::KernelFactory* factory = exec::KernelRegistry::builtin().find(node);
  ASSERT_NE(factory, nullptr);
  EXPECT_EQ((*factory)(exec::KernelBuildContext{node, 22}).status().code(),
            StatusCode::kUnsupported);
}

}  // namespace
}  // namespace nnc
