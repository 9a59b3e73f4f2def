// If against ONNX Runtime: both branches, outer-scope values read at two depths (a nested If),
// branches whose outputs differ in shape, and the errors a bad body must give before any run.

#include <gtest/gtest.h>

#include "model_text.h"
#include "nncompress/exec/executor.h"
#include "ort_util.h"

namespace nnc {
namespace {

using Inputs = std::vector<std::pair<std::string, Tensor>>;

// Then: Relu(x) * k. Else: an inner If on `deep` picks x * k or the first row of x - k, so the
// two branches' outputs differ in shape and the inner bodies read x and k two scopes up.
const char* kIfModel = R"(
  <ir_version: 8, opset_import: ["" : 13]>
  g (float[2, 3] x, bool[1] c, bool deep) => (float[?, 3] y) {
    k = Constant<value = float {1.5}>()
    y = If(c) <
      then_branch = t () => (float[2, 3] ty) {
        r = Relu(x)
        ty = Mul(r, k)
      },
      else_branch = e () => (float[?, 3] ey) {
        ey = If(deep) <
          then_branch = t2 () => (float[2, 3] a) { a = Mul(x, k) },
          else_branch = e2 () => (float[1, 3] b) {
            d = Sub(x, k)
            starts = Constant<value = int64[1] {0}>()
            ends = Constant<value = int64[1] {1}>()
            b = Slice(d, starts, ends)
          }
        >
      }
    >
  }
)";

Tensor boolTensor(Shape shape, bool v) {
  Tensor t(DType::kBool, std::move(shape));
  t.mutableData<bool>()[0] = v;
  return t;
}

TEST(ExecControlFlow, IfMatchesOrtOnEveryPath) {
  testing::TempDir dir;
  Model model = testing::parseModelText(kIfModel);
  const auto path = dir / "if.onnx";
  ASSERT_TRUE(saveModel(model, path).isOk());
  auto ex = exec::Executor::create(model);
  ASSERT_TRUE(ex.isOk()) << ex.status().toString();
  const Tensor x = Tensor::fromVector<float>({2, 3}, {-1, 2, -3, 4, 0.5f, -6});
  const std::vector<float> then_y = {0, 3, 0, 6, 0.75f, 0};
  const std::vector<float> deep_y = {-1.5f, 3, -4.5f, 6, 0.75f, -9};
  const std::vector<float> shallow_y = {-2.5f, 0.5f, -4.5f};
  struct Path {
    bool c, deep;
    Shape shape;
    std::vector<float> want;
  };
  for (const Path& p : {Path{true, false, {2, 3}, then_y}, Path{false, true, {2, 3}, deep_y},
                        Path{false, false, {1, 3}, shallow_y}}) {
    const Inputs in = {{"x", x}, {"c", boolTensor({1}, p.c)}, {"deep", boolTensor({}, p.deep)}};
    auto ours = (*ex)->run({in[0].second, in[1].second, in[2].second});
    ASSERT_TRUE(ours.isOk()) << ours.status().toString();
    auto ort = testing::runOrt(path, in, dir);
    ASSERT_TRUE(ort.isOk()) << ort.status().toString();
    ASSERT_EQ(ours->front().shape(), p.shape);
    ASSERT_EQ(ort->front().shape(), p.shape);
    const auto got = ours->front().data<float>(), want = ort->front().data<float>();
    for (size_t i = 0; i < p.want.size(); ++i) {
      EXPECT_FLOAT_EQ(got[i], want[i]) << "c=" << p.c << " deep=" << p.deep << " i=" << i;
      EXPECT_FLOAT_EQ(got[i], p.want[i]);
    }
  }
}

TEST(ExecControlFlow, IfBranchWithoutKernelIsNamedBeforeAnyRun) {
  Model model = testing::parseModelText(R"(
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[2] x, bool c) => (float[2] y) {
      y = If(c) <
        then_branch = t () => (float[2] a) { a = Relu(x) },
        else_branch = e () => (float[2] b) { b = Bernoulli(x) }
      >
    }
  )");
  const std::vector<std::string> missing = exec::unsupportedOps(model);
  ASSERT_EQ(missing, std::vector<std::string>{"Bernoulli"});
  auto ex = exec::Executor::create(model);
  ASSERT_FALSE(ex.isOk());
  EXPECT_NE(ex.status().message().find("Bernoulli"), std::string::npos) << ex.status().toString();
}

TEST(ExecControlFlow, IfConditionMustBeOneBool) {
  Model model = testing::parseModelText(R"(
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[2] x, bool[2] c) => (float[2] y) {
      y = If(c) <
        then_branch = t () => (float[2] a) { a = Relu(x) },
        else_branch = e () => (float[2] b) { b = Neg(x) }
      >
    }
  )");
  auto ex = exec::Executor::create(model);
  ASSERT_TRUE(ex.isOk()) << ex.status().toString();
  Tensor c(DType::kBool, {2});
  c.mutableData<bool>()[0] = true;
  auto out = (*ex)->run({Tensor::fromVector<float>({2}, {1, -1}), c});
  ASSERT_FALSE(out.isOk());
  EXPECT_NE(out.status().message().find("one bool"), std::string::npos) << out.status().toString();
}

}  // namespace
}  // namespace nnc
