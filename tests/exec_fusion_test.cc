// Differential tests for the executor's fast paths: the fused plan (Conv + BatchNormalization +
// activation as one kernel, pooled output buffers) against the unfused plan, and the GEMM of
// each instruction set against a plain double-precision reference.

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "../src/exec/kernels/gemm.h"
#include "graph_input.h"
#include "nncompress/exec/executor.h"
#include "nncompress/onnx_io/model_io.h"
#include "ort_util.h"

namespace nnc {
namespace {

Tensor randomTensor(Shape shape, std::mt19937& rng, float lo = -1.f, float hi = 1.f) {
  Tensor t(DType::kFloat32, std::move(shape));
  std::uniform_real_distribution<float> dist(lo, hi);
  for (float& v : t.mutableData<float>()) v = dist(rng);
  return t;
}

bool hasNaN(const Tensor& t) {
  for (float v : t.data<float>())
    if (std::isnan(v)) return true;
  return false;
}

std::unique_ptr<exec::Executor> makeExecutor(const Model& model, bool fuse, int threads = 1) {
  exec::ExecutorOptions options;
  options.num_threads = threads;
  options.fuse = fuse;
  options.poison_buffers = true;  // a kernel leaving output unwritten gives NaN
  auto ex = exec::Executor::create(model, options);
  EXPECT_TRUE(ex.isOk()) << ex.status().toString();
  return ex.isOk() ? std::move(ex).value() : nullptr;
}

std::map<std::string, Tensor> observeAll(exec::Executor& ex, const Tensor& x) {
  std::map<std::string, Tensor> seen;
  auto out = ex.run({x}, [&](const Value& v, const Tensor& t) { seen[v.name()] = t; });
  EXPECT_TRUE(out.isOk()) << out.status().toString();
  return seen;
}

// Fused and unfused plans agree on every fixture (BatchNormalization folding only changes
// rounding), on repeated runs that reuse (NaN-poisoned) buffers, on 1 and 2 threads; runs with
// an observer see exactly the unfused values.
TEST(ExecFusionTest, FixturesFusedMatchUnfused) {
  std::mt19937 rng(7);
  const Tensor x = randomTensor({8, 1, 28, 28}, rng, -2.f, 2.f);
  for (const char* name : {"vgg_bn", "resnet", "mobilenetv2", "densenet", "flatten_head"}) {
    SCOPED_TRACE(name);
    auto model = loadModel(testing::sourcePath(std::string("models/") + name + ".onnx"));
    ASSERT_TRUE(model.isOk());
    for (int threads : {1, 2}) {
      auto fused = makeExecutor(*model, true, threads);
      auto plain = makeExecutor(*model, false, threads);
      ASSERT_TRUE(fused && plain);
      size_t nodes = 0;
      for (const auto& n : model->graph->nodes()) nodes += n->isOp("Constant") ? 0 : 1;
      EXPECT_LT(fused->numFusedSteps(), nodes);  // every fixture has Conv + BN + activation
      EXPECT_EQ(plain->numFusedSteps(), nodes);
      auto want = plain->run({x});
      ASSERT_TRUE(want.isOk()) << want.status().toString();
      for (int rep = 0; rep < 3; ++rep) {
        auto got = fused->run({x});
        ASSERT_TRUE(got.isOk()) << got.status().toString();
        EXPECT_FALSE(hasNaN((*got)[0]));
        EXPECT_LE(testing::relativeMaxError((*got)[0], (*want)[0]), 1e-5) << rep;
      }
      const auto seen_fused = observeAll(*fused, x);
      const auto seen_plain = observeAll(*plain, x);
      ASSERT_EQ(seen_fused.size(), seen_plain.size());
      for (const auto& [value, t] : seen_plain) {
        ASSERT_TRUE(seen_fused.count(value)) << value;
        EXPECT_EQ(seen_fused.at(value).bytes(), t.bytes()) << value;
      }
    }
  }
}

struct ChainCase {
  std::string act;  // "", Relu, LeakyRelu, Clip
  int64_t group = 1, channels = 4, kernel = 3, stride = 1;
  bool bn = true, bias = true;
  bool conv_output_visible = false;  // Conv output also a graph output: nothing may be fused
};

// x -> Conv -> [BatchNormalization] -> [activation] -> y
Model chainModel(const ChainCase& c, std::mt19937& rng) {
  Model m;
  m.opset_imports = {{"", 13}};
  Graph& g = *m.graph;
  Value* x = testing::addFloatInput(g);
  const int64_t out_channels = c.group == c.channels ? c.channels * 2 : 6;
  std::vector<Value*> conv_in = {
      x, g.addInitializer(
             "w", randomTensor({out_channels, c.channels / c.group, c.kernel, c.kernel}, rng))};
  if (c.bias) conv_in.push_back(g.addInitializer("b", randomTensor({out_channels}, rng)));
  Node* conv = g.addNode("Conv", conv_in, {"conv_out"});
  conv->setAttribute(Attribute::makeInt("group", c.group));
  conv->setAttribute(Attribute::makeInts("strides", {c.stride, c.stride}));
  const int64_t pad = c.kernel / 2;
  conv->setAttribute(Attribute::makeInts("pads", {pad, pad, pad, pad}));
  Value* last = conv->output(0);
  if (c.conv_output_visible) g.addOutput(last);
  if (c.bn) {
    Node* bn = g.addNode("BatchNormalization",
                         {last, g.addInitializer("scale", randomTensor({out_channels}, rng)),
                          g.addInitializer("beta", randomTensor({out_channels}, rng)),
                          g.addInitializer("mean", randomTensor({out_channels}, rng)),
                          g.addInitializer("var", randomTensor({out_channels}, rng, 0.5f, 2.f))},
                         {"bn_out"});
    last = bn->output(0);
  }
  if (c.act == "Clip") {
    Node* n = g.addNode("Clip",
                        {last, g.addInitializer("lo", Tensor::fromVector<float>({}, {-0.25f})),
                         g.addInitializer("hi", Tensor::fromVector<float>({}, {0.5f}))},
                        {"act_out"});
    last = n->output(0);
  } else if (!c.act.empty()) {
    Node* n = g.addNode(c.act, {last}, {"act_out"});
    if (c.act == "LeakyRelu") n->setAttribute(Attribute::makeFloat("alpha", 0.2f));
    last = n->output(0);
  }
  g.addOutput(last);
  return m;
}

TEST(ExecFusionTest, ConvChainsFusedMatchUnfused) {
  std::vector<ChainCase> cases;
  for (const char* act : {"", "Relu", "LeakyRelu", "Clip"}) {
    ChainCase c;
    c.act = act;
    cases.push_back(c);                                // 3x3 conv
    c.kernel = 1, cases.push_back(c);                  // pointwise (direct GEMM)
    c.kernel = 3, c.group = 2, cases.push_back(c);     // grouped
    c.group = 4, c.stride = 2, cases.push_back(c);     // depthwise, strided
    c.group = 1, c.bn = false, cases.push_back(c);     // Conv + activation only
    c.bias = false, c.bn = true, cases.push_back(c);   // no Conv bias
    c.conv_output_visible = true, cases.push_back(c);  // must stay unfused
  }
  std::mt19937 rng(11);
  for (const ChainCase& c : cases) {
    SCOPED_TRACE(c.act + " group " + std::to_string(c.group) + " kernel " +
                 std::to_string(c.kernel) + (c.bn ? " bn" : "") + (c.bias ? " bias" : "") +
                 (c.conv_output_visible ? " visible" : ""));
    Model m = chainModel(c, rng);
    auto fused = makeExecutor(m, true);
    auto plain = makeExecutor(m, false);
    ASSERT_TRUE(fused && plain);
    const bool fusable = !c.conv_output_visible && (c.bn || !c.act.empty());
    EXPECT_EQ(fused->numFusedSteps(), fusable ? 1u : plain->numFusedSteps());
    for (int64_t batch : {1, 3}) {
      const Tensor x = randomTensor({batch, c.channels, 11, 11}, rng);
      auto want = plain->run({x});
      ASSERT_TRUE(want.isOk()) << want.status().toString();
      for (int rep = 0; rep < 2; ++rep) {
        auto got = fused->run({x});
        ASSERT_TRUE(got.isOk()) << got.status().toString();
        ASSERT_EQ(got->size(), want->size());
        for (size_t o = 0; o < got->size(); ++o) {
          EXPECT_FALSE(hasNaN((*got)[o]));
          EXPECT_LE(testing::relativeMaxError((*got)[o], (*want)[o]), 1e-5);
        }
      }
    }
  }
}

// Every instruction set this CPU has computes the GEMM and its epilogue like a double-precision
// reference, on random shapes, transposes and leading dimensions.
TEST(ExecFusionTest, GemmEveryIsaMatchesReference) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int64_t> dim(1, 70);
  int isas_run = 0;
  for (exec::GemmIsa isa :
       {exec::GemmIsa::kBaseline, exec::GemmIsa::kAvx2, exec::GemmIsa::kAvx512}) {
    if (!exec::gemmIsaSupported(isa)) continue;
    ++isas_run;
    SCOPED_TRACE(exec::gemmIsaName(isa));
    for (int trial = 0; trial < 40; ++trial) {
      const int64_t m = dim(rng), n = dim(rng), k = trial % 10 == 0 ? 1 : dim(rng);
      const bool ta = trial % 2, tb = (trial / 2) % 2;
      const int64_t lda = (ta ? m : k) + trial % 3, ldb = (tb ? k : n) + trial % 5,
                    ldc = n + trial % 4;
      const Tensor a = randomTensor({(ta ? k : m) * lda}, rng);
      const Tensor b = randomTensor({(tb ? n : k) * ldb}, rng);
      const Tensor rb = randomTensor({m}, rng), cb = randomTensor({n}, rng);
      std::vector<float> c(static_cast<size_t>(m * ldc), std::nanf(""));
      exec::GemmArgs g;
      g.m = m, g.n = n, g.k = k;
      g.a = a.data<float>().data(), g.lda = lda, g.trans_a = ta;
      g.b = b.data<float>().data(), g.ldb = ldb, g.trans_b = tb;
      g.c = c.data(), g.ldc = ldc;
      g.threads = 1 + trial % 2;
      exec::Epilogue e;
      e.act = static_cast<exec::Epilogue::Act>(trial % 4);
      e.lo = -0.5f, e.hi = 0.75f, e.alpha = 0.1f;
      if (trial % 3 == 1) e.row_bias = rb.data<float>().data();
      if (trial % 3 == 2) e.col_bias = cb.data<float>().data();
      exec::sgemmWithIsa(isa, g, e);
      double max_diff = 0;
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
          double want = 0;
          for (int64_t p = 0; p < k; ++p)
            want += double(a.data<float>()[ta ? p * lda + i : i * lda + p]) *
                    b.data<float>()[tb ? j * ldb + p : p * ldb + j];
          if (e.row_bias) want += e.row_bias[i];
          if (e.col_bias) want += e.col_bias[j];
          if (e.act == exec::Epilogue::kRelu) want = std::max(want, 0.0);
          if (e.act == exec::Epilogue::kClip) want = std::min(std::max(want, -0.5), 0.75);
          if (e.act == exec::Epilogue::kLeakyRelu && want < 0) want *= 0.1;
          const float got = c[i * ldc + j];
          ASSERT_FALSE(std::isnan(got)) << i << "," << j;
          max_diff = std::max(max_diff, std::abs(got - want));
        }
      }
      EXPECT_LE(max_diff, 1e-5 * (k + 1)) << m << "x" << n << "x" << k;
    }
  }
  EXPECT_GE(isas_run, 1);
  EXPECT_TRUE(exec::gemmIsaSupported(exec::bestGemmIsa()));
}

}  // namespace
}  // namespace nnc

namespace nnc {
namespace {

// A value listed twice as a graph output (and a graph input passed straight through) must come
// back whole every time: the first result is moved out of its slot, later ones are copies.
TEST(ExecOutputsTest, RepeatedGraphOutputsAreAllFilled) {
  Model m;
  m.opset_imports = {{"", 13}};
  Graph& g = *m.graph;
  Value* x = testing::addFloatInput(g);
  Node* relu = g.addNode("Relu", {x}, {"y"});
  g.addOutput(relu->output(0));
  g.addOutput(relu->output(0));
  g.addOutput(x);
  auto ex = exec::Executor::create(m);
  ASSERT_TRUE(ex.isOk()) << ex.status().toString();
  const Tensor input = Tensor::fromVector<float>({2, 2}, {-1.f, 2.f, -3.f, 4.f});
  auto out = (*ex)->run({input});
  ASSERT_TRUE(out.isOk()) << out.status().toString();
  ASSERT_EQ(out->size(), 3u);
  const std::vector<float> relu_want = {0.f, 2.f, 0.f, 4.f};
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ((*out)[i].numel(), 4) << "output " << i;
    const auto got = (*out)[i].data<float>();
    EXPECT_EQ(std::vector<float>(got.begin(), got.end()), relu_want) << "output " << i;
  }
  EXPECT_EQ((*out)[2].bytes(), input.bytes());
}

}  // namespace
}  // namespace nnc
