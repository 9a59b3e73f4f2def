// Fine-tuning pieces (issue 16): the distillation loss's gradient against finite differences,
// optimiser steps against hand-computed values, the learning-rate schedule, label-free
// augmentation against a naive reference.

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <set>

#include "nncompress/train/augment.h"
#include "nncompress/train/distill_loss.h"
#include "nncompress/train/lr_schedule.h"
#include "nncompress/train/optimizer.h"

namespace nnc::train {
namespace {

// Central differences of the loss in every student element, compared with the analytic gradient.
void expectGradientMatches(std::vector<Tensor> student, const std::vector<Tensor>& teacher,
                           const std::vector<int64_t>* labels, const DistillLossOptions& o) {
  auto analytic = distillationLoss(student, teacher, labels, o);
  ASSERT_TRUE(analytic.isOk()) << analytic.status().toString();
  const double h = 1e-2;
  for (size_t out = 0; out < student.size(); ++out)
    for (int64_t i = 0; i < student[out].numel(); ++i) {
      auto data = student[out].mutableData<float>();
      const float saved = data[i];
      data[i] = static_cast<float>(saved + h);
      const double up = distillationLoss(student, teacher, labels, o)->loss;
      data[i] = static_cast<float>(saved - h);
      const double down = distillationLoss(student, teacher, labels, o)->loss;
      data[i] = saved;
      const double numeric = (up - down) / (2 * h);
      const double got = analytic->gradients[out].data<float>()[i];
      EXPECT_NEAR(got, numeric, 1e-4 + 1e-3 * std::abs(numeric))
          << "output " << out << " [" << i << "]";
    }
}

TEST(DistillLoss, KlGradientMatchesFiniteDifferences) {
  const Tensor s = Tensor::fromVector<float>({2, 3}, {0.5f, -1.0f, 2.0f, 0.1f, 0.3f, -0.7f});
  const Tensor t = Tensor::fromVector<float>({2, 3}, {1.5f, 0.0f, -1.0f, 0.4f, 0.2f, 0.9f});
  DistillLossOptions o;
  o.temperature = 2.0;
  expectGradientMatches({s}, {t}, nullptr, o);
  const std::vector<int64_t> labels = {2, 0};
  expectGradientMatches({s}, {t}, &labels, o);
}

TEST(DistillLoss, KlIsZeroForEqualLogitsAndMatchesHandValue) {
  const Tensor z = Tensor::fromVector<float>({1, 2}, {0.0f, 0.0f});
  auto same = distillationLoss({z}, {z}, nullptr);
  ASSERT_TRUE(same.isOk());
  EXPECT_NEAR(same->loss, 0.0, 1e-12);
  // T = 1, teacher p = (0.5, 0.5), student z = (ln 3, 0) -> p = (0.75, 0.25):
  // KL = 0.5 ln(0.5/0.75) + 0.5 ln(0.5/0.25) = 0.5 ln(4/3) = 0.143841...
  const Tensor s = Tensor::fromVector<float>({1, 2}, {float(std::log(3.0)), 0.0f});
  DistillLossOptions o;
  o.temperature = 1.0;
  auto r = distillationLoss({s}, {z}, nullptr, o);
  ASSERT_TRUE(r.isOk());
  EXPECT_NEAR(r->loss, 0.5 * std::log(4.0 / 3.0), 1e-6);
  EXPECT_NEAR(r->gradients[0].data<float>()[0], 0.25, 1e-6);  // p_s - p_t
  // With label 1 and lambda 0.5: + 0.5 * (-ln 0.25).
  const std::vector<int64_t> y = {1};
  auto rl = distillationLoss({s}, {z}, &y, o);
  ASSERT_TRUE(rl.isOk());
  EXPECT_NEAR(rl->loss, 0.5 * std::log(4.0 / 3.0) + 0.5 * std::log(4.0), 1e-6);
  const std::vector<int64_t> bad = {2};
  EXPECT_FALSE(distillationLoss({s}, {z}, &bad, o).isOk());
}

TEST(DistillLoss, NormalisedMseGradientAndValue) {
  const Tensor s1 = Tensor::fromVector<float>({1, 2, 2}, {1, 2, 3, 4});
  const Tensor t1 = Tensor::fromVector<float>({1, 2, 2}, {1, 1, 3, 3});
  const Tensor s2 = Tensor::fromVector<float>({3}, {0.5f, 0.0f, -1.0f});
  const Tensor t2 = Tensor::fromVector<float>({3}, {1.0f, 2.0f, 3.0f});
  DistillLossOptions o;
  expectGradientMatches({s1, s2}, {t1, t2}, nullptr, o);
  // t1: mean 2, var 1; mse (0+1+0+1)/4 = 0.5. t2: var 2/3; mse (0.25+4+16)/3 = 6.75 -> /var.
  auto r = distillationLoss({s1, s2}, {t1, t2}, nullptr, o);
  ASSERT_TRUE(r.isOk());
  EXPECT_NEAR(r->loss, 0.5 + 6.75 / (2.0 / 3.0), 1e-9);
}

TEST(DistillLoss, MseOnLogitsIsTheNormalisedErrorAndKindsResolve) {
  const Tensor s = Tensor::fromVector<float>({2, 2}, {1, 2, 3, 4});
  const Tensor t = Tensor::fromVector<float>({2, 2}, {1, 1, 3, 3});
  EXPECT_EQ(resolveLossKind(LossKind::kAuto, {t}), LossKind::kKlDivergence);  // a classifier
  EXPECT_EQ(resolveLossKind(LossKind::kAuto, {s, t}), LossKind::kNormalisedMse);
  EXPECT_EQ(resolveLossKind(LossKind::kNormalisedMse, {t}), LossKind::kNormalisedMse);
  DistillLossOptions o;
  o.kind = LossKind::kNormalisedMse;
  auto r = distillationLoss({s}, {t}, nullptr, o);
  ASSERT_TRUE(r.isOk());
  EXPECT_NEAR(r->loss, 0.5 / 1.0, 1e-9);  // t: mean 2, var 1; mse (0+1+0+1)/4
  std::vector<int64_t> labels = {0, 1};
  EXPECT_FALSE(distillationLoss({s}, {t}, &labels, o).isOk());  // CE goes with KL only
  for (const char* name : {"auto", "kl", "mse"}) {
    auto k = parseLossKind(name);
    ASSERT_TRUE(k.isOk()) << name;
    EXPECT_STREQ(lossKindName(*k), name);
  }
  EXPECT_FALSE(parseLossKind("ce").isOk());
}

// Softmax logits (softmax_heads.h) and --loss kl: KL over the last axis of any rank, each
// position a row, and summed over outputs. A [2, 3, 4] output must give the loss and gradient of
// the same values as [6, 4] rows, and auto must pick KL where it would pick MSE without the flag.
TEST(DistillLoss, SoftmaxLogitsKlIsPerPositionOverTheLastAxis) {
  std::vector<float> sv(24), tv(24);
  for (int i = 0; i < 24; ++i) sv[i] = std::sin(1.3f * i), tv[i] = std::cos(0.7f * i);
  DistillLossOptions o;
  o.temperature = 2.0;
  o.softmax_logits = true;
  const Tensor s3 = Tensor::fromVector<float>({2, 3, 4}, sv);
  const Tensor t3 = Tensor::fromVector<float>({2, 3, 4}, tv);
  EXPECT_EQ(resolveLossKind(LossKind::kAuto, {s3}), LossKind::kNormalisedMse);
  EXPECT_EQ(resolveLossKind(LossKind::kAuto, {s3}, true), LossKind::kKlDivergence);
  expectGradientMatches({s3}, {t3}, nullptr, o);
  auto seq = distillationLoss({s3}, {t3}, nullptr, o);
  DistillLossOptions rows = o;
  rows.softmax_logits = false;
  auto flat = distillationLoss({Tensor::fromVector<float>({6, 4}, sv)},
                               {Tensor::fromVector<float>({6, 4}, tv)}, nullptr, rows);
  ASSERT_TRUE(seq.isOk() && flat.isOk());
  EXPECT_GT(flat->loss, 0.01);
  EXPECT_NEAR(seq->loss, flat->loss, 1e-12);
  for (int i = 0; i < 24; ++i)
    EXPECT_EQ(seq->gradients[0].data<float>()[i], flat->gradients[0].data<float>()[i]) << i;
  // Two heads: the sum of each alone, and a gradient for each.
  const Tensor s2 = Tensor::fromVector<float>({2, 2}, {0.5f, -1.0f, 2.0f, 0.1f});
  const Tensor t2 = Tensor::fromVector<float>({2, 2}, {1.5f, 0.0f, -1.0f, 0.4f});
  auto both = distillationLoss({s3, s2}, {t3, t2}, nullptr, o);
  auto second = distillationLoss({s2}, {t2}, nullptr, o);
  ASSERT_TRUE(both.isOk() && second.isOk());
  EXPECT_NEAR(both->loss, seq->loss + second->loss, 1e-12);
  expectGradientMatches({s3, s2}, {t3, t2}, nullptr, o);
  // --loss kl is the same KL for any outputs with classes on their last axis; [N, 1] has none.
  DistillLossOptions kl = rows;
  kl.kind = LossKind::kKlDivergence;
  auto explicit_kl = distillationLoss({s3, s2}, {t3, t2}, nullptr, kl);
  ASSERT_TRUE(explicit_kl.isOk()) << explicit_kl.status().toString();
  EXPECT_EQ(explicit_kl->loss, both->loss);
  const Tensor one = Tensor::fromVector<float>({2, 1}, {1.0f, 2.0f});
  auto refused = distillationLoss({s2, one}, {t2, one}, nullptr, kl);
  ASSERT_FALSE(refused.isOk());
  EXPECT_NE(refused.status().toString().find("use the mse loss"), std::string::npos);
  // Labels go with one [N, classes] output only.
  const std::vector<int64_t> labels = {0, 1};
  EXPECT_FALSE(distillationLoss({s3}, {t3}, &labels, o).isOk());
  expectGradientMatches({s2}, {t2}, &labels, o);
}

TEST(Optimizer, SgdMomentumTwoStepsByHand) {
  Tensor w = Tensor::fromVector<float>({1, 2}, {1.0f, -2.0f});  // rank 2: decayed
  Tensor b = Tensor::fromVector<float>({1}, {0.5f});            // rank 1: not decayed
  OptimizerOptions o;
  o.kind = OptimizerKind::kSgd;
  o.momentum = 0.9;
  o.weight_decay = 0.1;
  o.max_grad_norm = 0;
  Optimizer opt({&w, &b}, o);
  const Tensor gw = Tensor::fromVector<float>({1, 2}, {0.5f, 1.0f});
  const Tensor gb = Tensor::fromVector<float>({1}, {2.0f});
  ASSERT_TRUE(opt.step({&gw, &gb}, 0.1).isOk());
  // w0: g = 0.5 + 0.1*1 = 0.6, v = 0.6, w = 1 - 0.06 = 0.94
  // w1: g = 1 + 0.1*-2 = 0.8, v = 0.8, w = -2 - 0.08 = -2.08;  b: v = 2, b = 0.5 - 0.2 = 0.3
  EXPECT_NEAR(w.data<float>()[0], 0.94, 1e-6);
  EXPECT_NEAR(w.data<float>()[1], -2.08, 1e-6);
  EXPECT_NEAR(b.data<float>()[0], 0.3, 1e-6);
  ASSERT_TRUE(opt.step({&gw, &gb}, 0.1).isOk());
  // w0: g = 0.5 + 0.094 = 0.594, v = 0.54 + 0.594 = 1.134, w = 0.94 - 0.1134 = 0.8266
  // b: v = 1.8 + 2 = 3.8, b = 0.3 - 0.38 = -0.08
  EXPECT_NEAR(w.data<float>()[0], 0.8266, 1e-6);
  EXPECT_NEAR(b.data<float>()[0], -0.08, 1e-6);
}

TEST(Optimizer, AdamWFirstStepAndClipping) {
  Tensor w = Tensor::fromVector<float>({2, 1}, {1.0f, 2.0f});
  OptimizerOptions o;
  o.kind = OptimizerKind::kAdamW;
  o.weight_decay = 0.01;
  o.max_grad_norm = 1.0;
  Optimizer opt({&w}, o);
  const Tensor g = Tensor::fromVector<float>({2, 1}, {3.0f, -4.0f});  // norm 5 -> clipped to 1
  auto norm = opt.step({&g}, 0.1);
  ASSERT_TRUE(norm.isOk());
  EXPECT_NEAR(*norm, 5.0, 1e-9);
  // First Adam step: m_hat = g', v_hat = g'^2, update = sign(g') (eps negligible);
  // w = w - 0.1 * sign - 0.1 * 0.01 * w.
  EXPECT_NEAR(w.data<float>()[0], 1.0 - 0.1 - 0.001, 1e-6);
  EXPECT_NEAR(w.data<float>()[1], 2.0 + 0.1 - 0.002, 1e-6);
  // Second step, same gradient: m = 0.19 g', v = 0.001999 g'^2 -> m_hat = g', v_hat = g'^2.
  ASSERT_TRUE(opt.step({&g}, 0.1).isOk());
  EXPECT_NEAR(w.data<float>()[0], 0.899 - 0.1 - 0.000899, 1e-5);
  EXPECT_EQ(opt.steps(), 2);
}

TEST(Optimizer, RejectsMismatchedGradientsAndUnknownNames) {
  Tensor w(DType::kFloat32, {2});
  Optimizer opt({&w}, {});
  Tensor g(DType::kFloat32, {3});
  EXPECT_FALSE(opt.step({&g}, 0.1).isOk());
  EXPECT_FALSE(parseOptimizerKind("adam").isOk());
  EXPECT_TRUE(parseOptimizerKind("sgd").isOk());
}

TEST(CosineSchedule, WarmupThenCosine) {
  CosineSchedule s{1.0, 10, 2, 0.0};
  EXPECT_DOUBLE_EQ(s.at(0), 0.5);
  EXPECT_DOUBLE_EQ(s.at(1), 1.0);
  EXPECT_DOUBLE_EQ(s.at(2), 1.0);    // start of the cosine
  EXPECT_NEAR(s.at(6), 0.5, 1e-12);  // half way: (1 + cos(pi/2)) / 2
  EXPECT_NEAR(s.at(4), 0.5 * (1 + std::cos(M_PI / 4)), 1e-12);
  EXPECT_NEAR(s.at(10), 0.0, 1e-12);
  CosineSchedule floor{2.0, 4, 0, 0.1};
  EXPECT_NEAR(floor.at(4), 0.2, 1e-12);
  EXPECT_NEAR(floor.at(0), 2.0, 1e-12);
}

// The image [2, 3, 4] (2 channels, 3x4) shifted by (dy, dx) with edge replication, then
// mirrored: out(y, x) = in(clamp(y - dy), clamp(x' - dx)), x' = 3 - x when flipped.
std::vector<float> shiftedByHand(const std::vector<float>& in, int dy, int dx, bool flip) {
  std::vector<float> out(in.size());
  for (int c = 0; c < 2; ++c)
    for (int y = 0; y < 3; ++y)
      for (int x = 0; x < 4; ++x) {
        const int sy = std::clamp(y - dy, 0, 2), sx = std::clamp((flip ? 3 - x : x) - dx, 0, 3);
        out[c * 12 + y * 4 + x] = in[c * 12 + sy * 4 + sx];
      }
  return out;
}

TEST(Augment, EverySampleIsOneShiftOrMirrorOfItselfAndDrawsAreKeyed) {
  std::vector<float> image(24);
  for (int i = 0; i < 24; ++i) image[i] = static_cast<float>(i * i % 17);
  const int samples = 64;
  std::vector<float> batch;
  std::vector<uint64_t> keys;
  for (int i = 0; i < samples; ++i) {
    batch.insert(batch.end(), image.begin(), image.end());
    keys.push_back(1000 + i);
  }
  Tensor t = Tensor::fromVector<float>({samples, 2, 3, 4}, batch);
  AugmentOptions o;
  o.max_shift = 1;
  o.flip = true;
  augmentImages(t, o, 5, keys);
  std::set<std::tuple<int, int, bool>> seen;
  for (int i = 0; i < samples; ++i) {
    const auto got = t.data<float>().subspan(i * 24, 24);
    bool matched = false;
    for (int dy = -1; dy <= 1 && !matched; ++dy)
      for (int dx = -1; dx <= 1 && !matched; ++dx)
        for (bool flip : {false, true})
          if (!matched &&
              std::equal(got.begin(), got.end(), shiftedByHand(image, dy, dx, flip).begin())) {
            matched = true;
            seen.insert({dy, dx, flip});
          }
    EXPECT_TRUE(matched) << "sample " << i << " is no shift/mirror of the image";
  }
  EXPECT_GE(seen.size(), 12u);  // 18 possible draws, 64 samples: most of them appear
  // Same seed and keys: the same result; another seed: another one.
  Tensor again = Tensor::fromVector<float>({samples, 2, 3, 4}, batch);
  augmentImages(again, o, 5, keys);
  EXPECT_TRUE(
      std::equal(again.data<float>().begin(), again.data<float>().end(), t.data<float>().begin()));
  Tensor other = Tensor::fromVector<float>({samples, 2, 3, 4}, batch);
  augmentImages(other, o, 6, keys);
  EXPECT_FALSE(
      std::equal(other.data<float>().begin(), other.data<float>().end(), t.data<float>().begin()));
  // No augmentation requested, or not an image batch: untouched.
  Tensor flat = Tensor::fromVector<float>({samples, 24}, batch);
  augmentImages(flat, o, 5, keys);
  EXPECT_TRUE(std::equal(flat.data<float>().begin(), flat.data<float>().end(), batch.begin()));
}

}  // namespace
}  // namespace nnc::train
