#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "nncompress/ir/float16.h"
#include "nncompress/ir/tensor.h"
#include "nncompress/ir/tensor_eigen.h"

namespace nnc {
namespace {

TEST(TensorTest, FromBytesChecksSize) {
  EXPECT_TRUE(Tensor::fromBytes(DType::kFloat32, {2, 3}, std::string(24, '\0')).isOk());
  auto bad = Tensor::fromBytes(DType::kFloat32, {2, 3}, std::string(20, '\0'));
  ASSERT_FALSE(bad.isOk());
  EXPECT_NE(bad.status().message().find("needs 24 bytes but has 20"), std::string::npos);
  EXPECT_TRUE(Tensor::fromBytes(DType::kInt4, {3}, std::string(2, '\0')).isOk());  // 3 nibbles
  EXPECT_FALSE(Tensor::fromBytes(DType::kInt4, {3}, std::string(3, '\0')).isOk());
}

TEST(TensorTest, CopiesShareBytesUntilWritten) {
  const Tensor original = Tensor::fromVector<float>({3}, {1.f, 2.f, 3.f});
  EXPECT_FALSE(original.sharesBytes());
  Tensor copy = original;
  EXPECT_TRUE(copy.sharesBytes());
  EXPECT_EQ(copy.bytes().data(), original.bytes().data());
  copy.mutableData<float>()[1] = 20.f;  // the writer gets its own bytes
  EXPECT_FALSE(copy.sharesBytes());
  EXPECT_FALSE(original.sharesBytes());
  EXPECT_EQ(original.data<float>()[1], 2.f);
  EXPECT_EQ(copy.data<float>()[1], 20.f);
  Tensor third = original;
  const std::string released = third.releaseBytes();  // shared: a copy, the original keeps its own
  EXPECT_EQ(released, original.bytes());
  EXPECT_EQ(third.byteSize(), 0u);
  Tensor empty;
  EXPECT_EQ(empty.byteSize(), 0u);
  EXPECT_TRUE(empty.bytes().empty());
}

TEST(TensorTest, GatherAlongEachAxis) {
  // 2 x 3 x 2, values 0..11.
  std::vector<float> v(12);
  for (int i = 0; i < 12; ++i) v[i] = static_cast<float>(i);
  Tensor t = Tensor::fromVector<float>({2, 3, 2}, v);
  const std::vector<int64_t> keep1 = {2, 0};
  auto g1 = t.gather(1, keep1);
  ASSERT_TRUE(g1.isOk());
  EXPECT_EQ(g1->shape(), (Shape{2, 2, 2}));
  const std::vector<float> want1 = {4, 5, 0, 1, 10, 11, 6, 7};
  EXPECT_EQ(std::vector<float>(g1->data<float>().begin(), g1->data<float>().end()), want1);
  const std::vector<int64_t> keep0 = {1};
  auto g0 = t.gather(0, keep0);
  ASSERT_TRUE(g0.isOk());
  EXPECT_EQ(g0->data<float>()[0], 6.f);
  const std::vector<int64_t> keep_last = {1};
  auto g2 = t.gather(-1, keep_last);
  ASSERT_TRUE(g2.isOk());
  EXPECT_EQ(g2->shape(), (Shape{2, 3, 1}));
  EXPECT_EQ(g2->data<float>()[2], 5.f);
  const std::vector<int64_t> out_of_range = {3};
  EXPECT_FALSE(t.gather(1, out_of_range).isOk());
  EXPECT_FALSE(t.gather(3, keep0).isOk());
}

TEST(TensorTest, GatherPackedInt4) {
  Tensor t(DType::kInt4, {2, 3});
  const int values[6] = {-8, -1, 0, 1, 7, 3};
  for (int i = 0; i < 6; ++i) setPackedNibble(t.mutableBytes(), i, values[i]);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(t.elementAsDouble(i), values[i]);
  const std::vector<int64_t> keep = {2, 1};
  auto g = t.gather(1, keep);
  ASSERT_TRUE(g.isOk());
  EXPECT_EQ(g->byteSize(), 2u);
  const int want[4] = {0, -1, 3, 7};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(g->elementAsDouble(i), want[i]) << "at " << i;
}

TEST(TensorTest, TypedAccessAndEigenView) {
  Tensor t = Tensor::fromVector<float>({2, 3}, {1, 2, 3, 4, 5, 6});
  auto m = matrixView(t);
  EXPECT_EQ(m(1, 2), 6.f);
  EXPECT_FLOAT_EQ(m.row(0).cwiseAbs().sum(), 6.f);
  mutableMatrixView(t).row(1) *= 2.f;  // writes through to the tensor
  EXPECT_EQ(t.data<float>()[5], 12.f);
  Tensor w(DType::kFloat32, {4, 2, 3, 3});  // Conv weight: one row per output channel
  EXPECT_EQ(matrixView(w).rows(), 4);
  EXPECT_EQ(matrixView(w).cols(), 18);
  EXPECT_DEATH((void)t.data<int64_t>(), "wrong dtype");
}

TEST(TensorTest, HalfAndIntegerWidening) {
  Tensor h(DType::kFloat16, {2});
  uint16_t bits[2] = {0x3c00, 0xc000};  // 1.0, -2.0
  std::memcpy(h.mutableBytes().data(), bits, 4);
  EXPECT_EQ(h.elementAsDouble(0), 1.0);
  EXPECT_EQ(h.elementAsDouble(1), -2.0);
  Tensor i = Tensor::fromVector<int32_t>({3}, {1, -2, 3});
  EXPECT_EQ(i.toInt64Vector(), (std::vector<int64_t>{1, -2, 3}));
}

// float -> float16 rounds to nearest even at every boundary: the largest half, past it to
// infinity, subnormals, ties, signed zero and NaN.
TEST(TensorTest, FloatToHalfRoundsToNearestEven) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<std::pair<float, uint16_t>> cases = {{65504.f, 0x7bff},
                                                         {65519.f, 0x7bff},
                                                         {65520.f, 0x7c00},
                                                         {-70000.f, 0xfc00},
                                                         {std::ldexp(1.f, -24), 0x0001},
                                                         {std::ldexp(1.f, -25), 0x0000},
                                                         {std::ldexp(3.f, -25), 0x0002},
                                                         {std::ldexp(1.f, -14), 0x0400},
                                                         {-0.f, 0x8000},
                                                         {1.f + std::ldexp(1.f, -11), 0x3c00},
                                                         {1.f + std::ldexp(3.f, -11), 0x3c02},
                                                         {inf, 0x7c00},
                                                         {nan, 0x7e00},
                                                         {0.1f, 0x2e66}};
  std::vector<float> values;
  for (const auto& [v, bits] : cases) values.push_back(v);
  const Tensor f = Tensor::fromVector<float>({static_cast<int64_t>(values.size())}, values);
  const Tensor h = convertFloatTensor(f, DType::kFloat16);
  ASSERT_EQ(h.dtype(), DType::kFloat16);
  for (size_t i = 0; i < cases.size(); ++i) {
    uint16_t got;
    std::memcpy(&got, h.bytes().data() + 2 * i, 2);
    EXPECT_EQ(got, cases[i].second) << "value " << cases[i].first;
  }
  const Tensor back = convertFloatTensor(h, DType::kFloat32);
  EXPECT_EQ(back.data<float>()[0], 65504.f);
  EXPECT_EQ(back.data<float>()[4], std::ldexp(1.f, -24));
  EXPECT_TRUE(std::signbit(back.data<float>()[8]));
  EXPECT_TRUE(std::isnan(back.data<float>()[12]));
}

TEST(TensorTest, ShapeNumelRejectsNegativeAndOverflow) {
  EXPECT_EQ(shapeNumel({}), 1);
  EXPECT_EQ(shapeNumel({2, 0, 5}), 0);
  EXPECT_EQ(shapeNumel({-1, 3}), -1);
  EXPECT_EQ(shapeNumel({1ll << 40, 1ll << 40}), -1);
}

}  // namespace
}  // namespace nnc
