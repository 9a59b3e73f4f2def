// The compress controller's decisions, on a simulated model whose quality and size follow known
// formulas (so every expected decision can be worked out by hand).

#include <gtest/gtest.h>

#include <cmath>

#include "nncompress/pipeline/compress.h"

namespace nnc {
namespace {

// A simulated model: the fraction of channels left and the weight bits per layer, kept in the
// model's metadata (so the controller handles real Model objects).
struct SimState {
  double remaining = 1;
  bool quantized = false;
  BitPlan bits;
  bool retrained = false, qat = false;
};

Model makeModel(const SimState& s) {
  Model m;
  m.metadata_props.push_back({"remaining", std::to_string(s.remaining)});
  m.metadata_props.push_back({"quantized", s.quantized ? "1" : "0"});
  m.metadata_props.push_back({"retrained", s.retrained ? "1" : "0"});
  m.metadata_props.push_back({"qat", s.qat ? "1" : "0"});
  for (const auto& [layer, b] : s.bits)
    m.metadata_props.push_back({"bits:" + layer, std::to_string(b)});
  return m;
}

SimState stateOf(const Model& m) {
  SimState s;
  for (const auto& [k, v] : m.metadata_props) {
    if (k == "remaining") s.remaining = std::stod(v);
    if (k == "quantized") s.quantized = v == "1";
    if (k == "retrained") s.retrained = v == "1";
    if (k == "qat") s.qat = v == "1";
    if (k.rfind("bits:", 0) == 0) s.bits[k.substr(5)] = std::stoi(v);
  }
  return s;
}

// Five layers: weights (in elements, before pruning) and the quality each loses at 4 bits.
struct Layer {
  const char* name;
  double weights;
  double low_bit_loss;
};
constexpr Layer kLayers[] = {{"conv0", 1000, 0.020},
                             {"conv1", 4000, 0.001},
                             {"conv2", 4000, 0.003},
                             {"conv3", 8000, 0.0005},
                             {"fc", 500, 0.010}};

struct Sim {
  double prune_loss_scale = 0.2;  // quality lost: scale * (1 - remaining)^2
  double int8_loss = 0.002;
  double retrain_factor = 0.25;  // a retrained model loses this share of its pruning loss
  int quality_calls = 0;

  CompressActions actions() {
    CompressActions a;
    a.quality = [this](const Model& m) -> StatusOr<double> {
      ++quality_calls;
      const SimState s = stateOf(m);
      double q = 0.9 - prune_loss_scale * std::pow(1 - s.remaining, 2) *
                           (s.retrained ? retrain_factor : 1.0);
      if (s.quantized) {
        q -= int8_loss;
        for (const Layer& l : kLayers)
          if (s.bits.count(l.name) && s.bits.at(l.name) < 8 && !s.qat) q -= l.low_bit_loss;
      }
      return q;
    };
    a.size = [](const Model& m) -> StatusOr<int64_t> {
      const SimState s = stateOf(m);
      double bytes = 100;  // graph overhead
      for (const Layer& l : kLayers) {
        double per_weight = 4;
        if (s.quantized) per_weight = s.bits.count(l.name) ? s.bits.at(l.name) / 8.0 : 1;
        bytes += l.weights * s.remaining * per_weight;
      }
      return static_cast<int64_t>(std::llround(bytes));
    };
    a.prune = [](const Model& m, double fraction) -> StatusOr<Model> {
      SimState s = stateOf(m);
      if (s.remaining < 0.1) return Status(StatusCode::kTargetNotMet, "nothing left");
      s.remaining *= 1 - fraction;
      return makeModel(s);
    };
    a.quantizable_layers = [](const Model&) {
      std::vector<std::string> names;
      for (const Layer& l : kLayers) names.push_back(l.name);
      return names;
    };
    a.quantize = [](const Model& m, const BitPlan& bits) -> StatusOr<Model> {
      SimState s = stateOf(m);
      s.quantized = true;
      s.bits = bits;
      return makeModel(s);
    };
    return a;
  }
};

// A retrain action that counts its calls and marks the model retrained.
std::function<StatusOr<Model>(const Model&)> countingRetrain(int& calls) {
  return [&calls](const Model& m) -> StatusOr<Model> {
    ++calls;
    SimState s = stateOf(m);
    s.retrained = true;
    return makeModel(s);
  };
}

// A qat action that counts its calls and quantizes with `bits` losing nothing at low bits.
std::function<StatusOr<Model>(const Model&, const BitPlan&)> countingQat(int& calls) {
  return [&calls](const Model& m, const BitPlan& bits) -> StatusOr<Model> {
    ++calls;
    SimState s = stateOf(m);
    s.qat = s.quantized = true;
    s.bits = bits;
    return makeModel(s);
  };
}

TEST(CompressControllerTest, PrunesWithinTheDemandMinusTheQuantizationReserve) {
  Sim sim;
  CompressTargets t;
  t.max_drop = 0.01;
  auto r = compressModel(makeModel({}), t, sim.actions());
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_DOUBLE_EQ(r->baseline_quality, 0.9);
  ASSERT_TRUE(r->best.has_value());
  EXPECT_GE(r->best_quality, 0.9 - 0.01 - 1e-12);
  EXPECT_TRUE(r->best_quantized);
  EXPECT_TRUE(r->best_bits.empty());  // no size demand: 8 bits everywhere
  // Pruning stopped where the next step would have cost more than 0.01 - 0.002 (the reserve):
  // 0.2 (1 - r)^2 <= 0.008  <=>  r >= 0.8. Every accepted prune step respects that bound.
  const double remaining = stateOf(*r->best).remaining;
  EXPECT_GE(remaining, 0.8 - 1e-9);
  EXPECT_LT(remaining, 0.83);  // and it got close to it (steps halve down to 2.5%)
  // The recorded prune steps replay to the same model.
  double replayed = 1;
  for (double f : r->best_prune_fractions) replayed *= 1 - f;
  EXPECT_NEAR(replayed, remaining, 1e-6);
  EXPECT_FALSE(r->best_prune_fractions.empty());
  for (const CompressStep& s : r->steps)
    if (s.kind == "prune" && s.accepted) {
      EXPECT_GE(s.quality, 0.9 - 0.008 - 1e-12);
    }
  EXPECT_TRUE(r->met_size);
}

TEST(CompressControllerTest, LowersTheLeastSensitiveLayersUntilTheSizeFits) {
  Sim sim;
  sim.prune_loss_scale = 1e9;  // any pruning breaks the demand: quantization does all the work
  CompressTargets t;
  t.max_drop = 0.01;
  // 8-bit size: 100 + 17500 = 17600 bytes. Halving conv3 (least sensitive, 8000 weights) gives
  // 13600; adding conv1 (next least sensitive) gives 11600.
  t.max_bytes = 12000;
  auto r = compressModel(makeModel({}), t, sim.actions());
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  ASSERT_TRUE(r->best.has_value());
  EXPECT_TRUE(r->met_size);
  EXPECT_EQ(r->best_bytes, 11600);
  EXPECT_EQ(r->best_bits, (BitPlan{{"conv1", 4}, {"conv3", 4}}));
  EXPECT_NEAR(r->best_quality, 0.9 - 0.002 - 0.001 - 0.0005, 1e-12);
  ASSERT_EQ(r->sensitivity.size(), 5u);
  EXPECT_NEAR(r->sensitivity.at("conv0"), 0.020, 1e-12);
  EXPECT_NEAR(r->sensitivity.at("conv3"), 0.0005, 1e-12);
}

TEST(CompressControllerTest, ImpossibleSizeKeepsTheSmallestModelThatHeldPrecision) {
  Sim sim;
  sim.prune_loss_scale = 1e9;
  CompressTargets t;
  t.max_drop = 0.01;
  t.max_bytes = 500;  // even every layer at 4 bits (8850 bytes) is far bigger
  auto r = compressModel(makeModel({}), t, sim.actions());
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_FALSE(r->met_size);
  ASSERT_TRUE(r->best.has_value());
  // All five layers at 4 bits lose 0.0345 > 0.01. The most layers that hold the demand (low-bit
  // loss <= 0.008): conv3, conv1, conv2 (0.0045); adding fc would make it 0.0145.
  EXPECT_EQ(r->best_bits, (BitPlan{{"conv1", 4}, {"conv2", 4}, {"conv3", 4}}));
  EXPECT_NEAR(r->best_quality, 0.9 - 0.002 - 0.0045, 1e-12);
  // Bytes: overhead 100, conv0 and fc at 8 bits (1000 + 500), conv1..3 at 4 bits (2000+2000+4000).
  EXPECT_EQ(r->best_bytes, 100 + 1000 + 500 + 2000 + 2000 + 4000);
}

TEST(CompressControllerTest, NothingMeetsTheDemand) {
  Sim sim;
  sim.prune_loss_scale = 1e9;
  sim.int8_loss = 0.5;  // even 8 bits breaks it
  CompressTargets t;
  t.max_drop = 0.01;
  t.max_bytes = 1000;
  auto r = compressModel(makeModel({}), t, sim.actions());
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_FALSE(r->best.has_value());
  EXPECT_FALSE(r->met_size);
}

TEST(CompressControllerTest, PruneOnlyKeepsTheLastCheckpoint) {
  Sim sim;
  CompressTargets t;
  t.max_drop = 0.02;
  t.quantize = false;
  auto r = compressModel(makeModel({}), t, sim.actions());
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  ASSERT_TRUE(r->best.has_value());
  EXPECT_FALSE(r->best_quantized);
  // No reserve without quantization: 0.2 (1 - r)^2 <= 0.02  <=>  r >= 0.6838.
  const double remaining = stateOf(*r->best).remaining;
  EXPECT_GE(remaining, 0.6837);
  EXPECT_LT(remaining, 0.72);
}

// Retraining (compress --finetune): pruning goes retrain_slack below the demand, then the last
// checkpoint is retrained. No quantization, max_drop 0.02, slack 0.03: pruning stops at
// 0.2 (1 - r)^2 <= 0.05 <=> r >= 0.5; retrained it loses 0.05 (1 - r)^2 <= 0.0125: accepted.
TEST(CompressControllerTest, RetrainingLetsPruningGoFurther) {
  Sim sim;
  CompressTargets t;
  t.max_drop = 0.02;
  t.quantize = false;
  t.retrain_slack = 0.03;
  int retrains = 0;
  CompressActions a = sim.actions();
  a.retrain = countingRetrain(retrains);
  auto r = compressModel(makeModel({}), t, a);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  ASSERT_TRUE(r->best.has_value());
  EXPECT_TRUE(r->best_retrained);
  EXPECT_EQ(retrains, 1);
  const double remaining = stateOf(*r->best).remaining;
  EXPECT_GE(remaining, 0.5 - 1e-9);
  EXPECT_LT(remaining, 0.55);  // below the 0.6838 pruning alone reaches
  EXPECT_GE(r->best_quality, 0.9 - 0.02);

  // A retrain that wins nothing back: after one try no earlier relaxed checkpoint would reach
  // the demand with that gain, so only the checkpoints that met the demand without retraining
  // remain (r >= 0.6838).
  sim.retrain_factor = 1.0;
  retrains = 0;
  auto r2 = compressModel(makeModel({}), t, a);
  ASSERT_TRUE(r2.isOk()) << r2.status().toString();
  ASSERT_TRUE(r2->best.has_value());
  EXPECT_EQ(retrains, 1);
  EXPECT_FALSE(r2->best_retrained);
  EXPECT_GE(stateOf(*r2->best).remaining, 0.6837);
  int failed = 0;
  for (const CompressStep& s : r2->steps) failed += s.kind == "retrain" && !s.accepted;
  EXPECT_EQ(failed, 1);

  // A partial gain (a retrained model keeps 80% of its pruning loss): the last checkpoint
  // (r ~ 0.5, loss 0.05 -> 0.04) misses; the next try is the latest checkpoint whose loss the
  // measured gain (0.01) brings within 0.02, not its near neighbour.
  sim.retrain_factor = 0.8;
  retrains = 0;
  auto r3 = compressModel(makeModel({}), t, a);
  ASSERT_TRUE(r3.isOk()) << r3.status().toString();
  ASSERT_TRUE(r3->best.has_value());
  EXPECT_EQ(retrains, 2);
  EXPECT_TRUE(r3->best_retrained);
  EXPECT_GE(r3->best_quality, 0.9 - 0.02);
  EXPECT_LT(stateOf(*r3->best).remaining, 0.6838);  // further than pruning alone
}

// Quantization-aware training: the low-bit plan is quantized from a qat-retrained copy (here it
// loses nothing at 4 bits), so the same plan as without qat keeps more quality.
TEST(CompressControllerTest, QatRetrainsTheLowBitPlan) {
  Sim sim;
  sim.prune_loss_scale = 1e9;
  CompressTargets t;
  t.max_drop = 0.01;
  t.max_bytes = 12000;
  int qat_calls = 0;
  CompressActions a = sim.actions();
  a.qat = countingQat(qat_calls);
  auto r = compressModel(makeModel({}), t, a);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  ASSERT_TRUE(r->best.has_value());
  EXPECT_EQ(qat_calls, 1);
  EXPECT_TRUE(r->best_qat);  // the recipe records it
  EXPECT_EQ(r->best_bits, (BitPlan{{"conv1", 4}, {"conv3", 4}}));
  EXPECT_NEAR(r->best_quality, 0.9 - 0.002, 1e-12);
}

// --finetune --qat with a size demand: the largest pruned model that fits with every layer at
// low bits is retrained and then trained quantized, once each; not the most pruned checkpoint.
TEST(CompressControllerTest, SizeFirstRetrainsTheLargestModelThatFitsAtLowBits) {
  Sim sim;
  CompressTargets t;
  t.max_drop = 0.03;
  t.max_bytes = 3000;  // every layer at 4 bits: 100 + 8750 r bytes, so r <= 0.3314
  int retrains = 0, qats = 0;
  CompressActions a = sim.actions();
  a.retrain = countingRetrain(retrains);
  a.qat = countingQat(qats);
  auto r = compressModel(makeModel({}), t, a);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  ASSERT_TRUE(r->best.has_value());
  EXPECT_EQ(retrains, 1);
  EXPECT_EQ(qats, 1);
  EXPECT_TRUE(r->met_size);
  EXPECT_TRUE(r->best_qat);
  EXPECT_TRUE(r->best_retrained);
  EXPECT_EQ(r->best_bits.size(), 5u);
  EXPECT_LE(r->best_bytes, 3000);
  const double remaining = stateOf(*r->best).remaining;
  EXPECT_LE(remaining, 0.3315);
  EXPECT_GE(remaining, 0.31);  // the bisection keeps close to the largest that fits
  EXPECT_GE(r->best_quality, 0.87);
  double product = 1;  // the recipe's prune steps lead to that model
  for (double f : r->best_prune_fractions) product *= 1 - f;
  EXPECT_NEAR(product, remaining, 1e-5);  // the sim stores 6 decimals

  // A retrain that wins nothing back misses the demand there: no training with quantization,
  // and the accuracy-first search takes over.
  sim.retrain_factor = 1.0;
  retrains = qats = 0;
  auto r2 = compressModel(makeModel({}), t, a);
  ASSERT_TRUE(r2.isOk()) << r2.status().toString();
  EXPECT_FALSE(r2->met_size);
  int size_first_retrains = 0;
  for (const CompressStep& s : r2->steps)
    size_first_retrains += s.kind == "retrain" && s.description.find("fits") != std::string::npos;
  EXPECT_EQ(size_first_retrains, 1);
}

TEST(CompressControllerTest, RejectsMissingActions) {
  CompressActions none;
  EXPECT_EQ(compressModel(makeModel({}), {}, none).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace nnc

namespace nnc {
namespace {

// The quick measure sees a different absolute level (a subset) but the same drops: it must
// reject clear failures on its own and leave every accepted candidate to the full measure.
TEST(CompressControllerTest, QuickScreeningRejectsClearFailuresOnly) {
  Sim sim;
  CompressTargets t;
  t.max_drop = 0.01;
  CompressActions a = sim.actions();
  int full_calls = 0, quick_calls = 0;
  auto full = a.quality;
  a.quality = [&, full](const Model& m) {
    ++full_calls;
    return full(m);
  };
  a.quick_quality = [&, full](const Model& m) -> StatusOr<double> {
    ++quick_calls;
    NNC_ASSIGN_OR_RETURN(double q, full(m));
    return q + 0.03;  // the subset is easier, drops are the same
  };
  a.quick_margin = 0.005;
  auto r = compressModel(makeModel({}), t, a);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  // Same decisions as without screening.
  Sim plain;
  auto reference = compressModel(makeModel({}), t, plain.actions());
  ASSERT_TRUE(reference.isOk());
  EXPECT_EQ(r->best_bytes, reference->best_bytes);
  EXPECT_DOUBLE_EQ(r->best_quality, reference->best_quality);
  EXPECT_GT(quick_calls, 0);
  EXPECT_GT(r->quick_rejections, 0);
  EXPECT_LT(full_calls, plain.quality_calls);
  for (const CompressStep& s : r->steps)
    if (s.accepted) {
      EXPECT_GE(s.quality, 0.9 - 0.01 - 1e-12) << s.description;
    }
}

}  // namespace
}  // namespace nnc
