// --format integer (METHODS.md method 5). Bit identity: on real Fashion-MNIST test images, every
// folded layer's uint8 output equals the fake-quant chain's integers computed here independently
// from the QDQ model's parameters (int8 weights, scales, bias, Relu/Clip bounds, output scale)
// with an exact integer convolution and y = s_x s_w[c] A + b[c] in double:
// q = clip(rne(clamps(y) / s_a) + z_a, 0, 255). 8-, 4- and 2-bit activations. The integer model
// passes the ONNX checker, runs in ONNX Runtime with [N, 10] logits close to our executor's, and
// ORT's uint8 layer outputs equal ours exactly.
// The 1,000-image bit-identity runs carry "FullDataset" in their name (label full_dataset,
// Release only); the 64-image ones run everywhere, ASan included.

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "nncompress/exec/executor.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/quant/bn_fold.h"
#include "nncompress/quant/calibration.h"
#include "nncompress/quant/integer_fold.h"
#include "nncompress/quant/quantize.h"
#include "ort_util.h"
#include "test_util.h"

namespace nnc {
namespace {

const char* kData = "/usr/share/datasets/fashion-mnist/";

std::unique_ptr<data::SampleReader> openSet(const std::string& file) {
  data::Preprocess p;
  EXPECT_TRUE(data::setPreprocessOption(p, "mean", "0.2860").isOk());
  EXPECT_TRUE(data::setPreprocessOption(p, "std", "0.3530").isOk());
  auto r = data::openData(std::string(kData) + file, p);
  EXPECT_TRUE(r.isOk()) << r.status().message();
  return std::move(r).value();
}

struct Built {
  Model qdq;
  Model integer;
  quant::IntegerFoldResult fold;
};

// The quantize command's pipeline (BN folding, minmax calibration on 128 TRAIN images with
// 2^bits levels, QDQ export), then the integer folding of a copy.
StatusOr<Built> build(const std::string& fixture, int act_bits) {
  NNC_ASSIGN_OR_RETURN(Model m, loadModel(testing::sourcePath("models/" + fixture + ".onnx")));
  NNC_ASSIGN_OR_RETURN(auto folded, quant::foldBatchNorms(*m.graph));
  (void)folded;
  quant::QuantizeOptions options;
  options.act_bits = act_bits;
  options.placement = quant::QdqPlacement::kTensorRt;  // the layout --format integer folds
  NNC_ASSIGN_OR_RETURN(auto targets, quant::selectTargets(*m.graph, options));
  auto reader = openSet("train-images-idx3-ubyte.gz");
  quant::CalibrationOptions co;
  co.calib_size = 128;
  NNC_ASSIGN_OR_RETURN(auto hist, quant::collectHistograms(
                                      m, *reader, quant::valuesToCalibrate(targets, options), co));
  std::map<std::string, quant::Range> ranges;
  for (const auto& [n, h] : hist) ranges[n] = h.range(quant::CalibMethod::kMinMax, false, act_bits);
  NNC_ASSIGN_OR_RETURN(auto layers, quant::quantizeModel(m, targets, ranges, options));
  (void)layers;
  NNC_ASSIGN_OR_RETURN(Model copy, cloneModel(m));
  NNC_ASSIGN_OR_RETURN(auto fold, quant::foldIntegerLayers(copy, act_bits));
  return Built{std::move(m), std::move(copy), std::move(fold)};
}

// One layer's fake-quant chain, read from the QDQ model.
struct Reference {
  const Node* conv = nullptr;
  const Tensor* w = nullptr;  // int8
  std::vector<double> s_w, bias;
  double s_x = 0, s_a = 0;
  int z_x = 0, z_a = 0;
  std::vector<std::pair<double, double>> clamps;
  std::vector<const Node*> pools;  // MaxPool / Flatten after the Conv, in order
};

const Tensor& constant(const Value* v) {
  const Tensor* t = v->constantData();
  NNC_CHECK(t != nullptr, "constant expected");
  return *t;
}

Reference referenceOf(const Graph& qdq, const std::string& conv_name) {
  Reference r;
  for (const auto& n : qdq.nodes())
    if (n->isOp("Conv") && n->name() == conv_name) r.conv = n.get();
  NNC_CHECK(r.conv != nullptr, "conv in the QDQ model");
  const Node* dx = r.conv->input(0)->producer();
  r.s_x = constant(dx->input(1)).data<float>()[0];
  r.z_x = constant(dx->input(2)).data<uint8_t>()[0];
  const Node* dw = r.conv->input(1)->producer();
  r.w = &constant(dw->input(0));
  const Tensor& sw = constant(dw->input(1));
  const int64_t channels = r.w->dim(0);
  for (int64_t c = 0; c < channels; ++c) {
    r.s_w.push_back(sw.data<float>()[sw.numel() == 1 ? 0 : c]);
    r.bias.push_back(r.conv->input(2) ? constant(r.conv->input(2)).data<float>()[c] : 0.0);
  }
  const Value* v = r.conv->output(0);
  const double inf = std::numeric_limits<double>::infinity();
  for (;;) {
    const Node* u = v->uses().at(0).node;
    if (u->isOp("QuantizeLinear")) {
      r.s_a = constant(u->input(1)).data<float>()[0];
      r.z_a = constant(u->input(2)).data<uint8_t>()[0];
      break;
    }
    if (u->isOp("MaxPool") || u->isOp("Flatten")) r.pools.push_back(u);
    if (u->isOp("Relu")) r.clamps.emplace_back(0.0, inf);
    if (u->isOp("Clip"))
      r.clamps.emplace_back(u->input(1) ? constant(u->input(1)).data<float>()[0] : -inf,
                            u->input(2) ? constant(u->input(2)).data<float>()[0] : inf);
    v = u->output(0);
  }
  return r;
}

// Max over each window's in-bounds elements of uint8 [N, C, H, W] (the float MaxPool pads with
// -inf, which never wins).
std::vector<uint8_t> maxPool(const Node& pool, const std::vector<uint8_t>& x, Shape& shape) {
  const auto k = pool.intsAttr("kernel_shape");
  const auto st = pool.intsAttr("strides", {1, 1});
  const auto pads = pool.intsAttr("pads", {0, 0, 0, 0});
  NNC_CHECK(k.size() == 2 && pool.intAttr("ceil_mode", 0) == 0 && !pool.hasAttribute("dilations"),
            "simple 2-D MaxPool");
  const int64_t n = shape[0], c = shape[1], h = shape[2], w = shape[3];
  const int64_t oh = (h + pads[0] + pads[2] - k[0]) / st[0] + 1;
  const int64_t ow = (w + pads[1] + pads[3] - k[1]) / st[1] + 1;
  std::vector<uint8_t> y(n * c * oh * ow, 0);
  for (int64_t p = 0; p < n * c; ++p)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        uint8_t m = 0;
        for (int64_t ky = 0; ky < k[0]; ++ky)
          for (int64_t kx = 0; kx < k[1]; ++kx) {
            const int64_t iy = oy * st[0] - pads[0] + ky, ix = ox * st[1] - pads[1] + kx;
            if (iy >= 0 && iy < h && ix >= 0 && ix < w) m = std::max(m, x[(p * h + iy) * w + ix]);
          }
        y[(p * oh + oy) * ow + ox] = m;
      }
  shape = {n, c, oh, ow};
  return y;
}

// The reference integers of one layer for input x (uint8 [N, Cin, H, W]).
std::vector<uint8_t> referenceOutput(const Reference& r, const Tensor& x) {
  const auto strides = r.conv->intsAttr("strides", {1, 1});
  const auto dil = r.conv->intsAttr("dilations", {1, 1});
  const auto pads = r.conv->intsAttr("pads", {0, 0, 0, 0});
  const int64_t group = r.conv->intAttr("group", 1);
  const int64_t n = x.dim(0), cin = x.dim(1), h = x.dim(2), wd = x.dim(3);
  const int64_t cout = r.w->dim(0), cg = r.w->dim(1), kh = r.w->dim(2), kw = r.w->dim(3);
  const int64_t oh = (h + pads[0] + pads[2] - dil[0] * (kh - 1) - 1) / strides[0] + 1;
  const int64_t ow = (wd + pads[1] + pads[3] - dil[1] * (kw - 1) - 1) / strides[1] + 1;
  const auto xd = x.data<uint8_t>();
  const auto w = r.w->data<int8_t>();
  std::vector<uint8_t> q(n * cout * oh * ow);
  for (int64_t b = 0; b < n; ++b)
    for (int64_t co = 0; co < cout; ++co) {
      const int64_t g0 = (co / (cout / group)) * cg;
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          int64_t acc = 0;
          for (int64_t ci = 0; ci < cg; ++ci)
            for (int64_t ky = 0; ky < kh; ++ky) {
              const int64_t iy = oy * strides[0] - pads[0] + ky * dil[0];
              if (iy < 0 || iy >= h) continue;  // padding: x_q = z_x, contributes 0
              for (int64_t kx = 0; kx < kw; ++kx) {
                const int64_t ix = ox * strides[1] - pads[1] + kx * dil[1];
                if (ix < 0 || ix >= wd) continue;
                acc += int64_t(w[((co * cg + ci) * kh + ky) * kw + kx]) *
                       (int64_t(xd[((b * cin + g0 + ci) * h + iy) * wd + ix]) - r.z_x);
              }
            }
          double y = r.s_x * r.s_w[co] * double(acc) + r.bias[co];
          for (const auto& [lo, hi] : r.clamps) y = std::min(std::max(y, lo), hi);
          const double v = std::nearbyint(y / r.s_a) + r.z_a;
          q[((b * cout + co) * oh + oy) * ow + ox] = uint8_t(std::clamp(v, 0.0, 255.0));
        }
    }
  Shape shape{n, cout, oh, ow};
  for (const Node* p : r.pools)
    if (p->isOp("MaxPool")) q = maxPool(*p, q, shape);  // Flatten keeps the element order
  return q;
}

// Runs `model` on test images [start, start + count) and keeps the named tensors.
std::map<std::string, Tensor> capture(const Model& model, const std::set<std::string>& names,
                                      int64_t start, int64_t count) {
  std::map<std::string, Tensor> kept;
  auto ex = exec::Executor::create(model, {});
  EXPECT_TRUE(ex.isOk()) << ex.status().message();
  auto reader = openSet("t10k-images-idx3-ubyte.gz");
  auto x = reader->readBatch(start, count);
  EXPECT_TRUE(x.isOk());
  std::vector<Tensor> feeds{std::move(x).value()};
  auto out = (*ex)->run(std::move(feeds), [&](const Value& v, const Tensor& t) {
    if (names.count(v.name())) kept[v.name()] = t;
  });
  EXPECT_TRUE(out.isOk()) << out.status().message();
  return kept;
}

struct Case {
  std::string fixture;
  int act_bits;
  int64_t images;
};

class IntegerBitIdentity : public ::testing::TestWithParam<Case> {};

TEST_P(IntegerBitIdentity, FoldedLayersEqualFakeQuantIntegers) {
  const Case& p = GetParam();
  auto built = build(p.fixture, p.act_bits);
  ASSERT_TRUE(built.isOk()) << built.status().message();
  const auto& folded = built->fold.folded;
  ASSERT_GE(folded.size(), 2u) << "expected several folded layers in " << p.fixture;
  for (const auto& f : folded)
    EXPECT_EQ(f.form, p.act_bits <= 4 ? "thresholds" : "multiplier") << f.name;
  std::set<std::string> names, qdq_names;
  for (const auto& f : folded) names.insert({f.input, f.output}), qdq_names.insert(f.replaced);
  int64_t checked = 0, qdq_differ = 0;
  for (int64_t start = 0; start < p.images; start += 250) {
    const int64_t count = std::min<int64_t>(250, p.images - start);
    auto got = capture(built->integer, names, start, count);
    auto qdq = capture(built->qdq, qdq_names, start, count);
    for (const auto& f : folded) {
      ASSERT_TRUE(got.count(f.input) && got.count(f.output)) << f.name;
      const Tensor& y = got[f.output];
      ASSERT_EQ(y.dtype(), DType::kUInt8);
      const std::vector<uint8_t> want =
          referenceOutput(referenceOf(*built->qdq.graph, f.name), got[f.input]);
      const auto have = y.data<uint8_t>();
      ASSERT_EQ(int64_t(want.size()), y.numel()) << f.name;
      int64_t bad = 0, first = -1;
      for (size_t i = 0; i < want.size(); ++i)
        if (want[i] != have[i]) bad += 1, first = first < 0 ? int64_t(i) : first;
      EXPECT_EQ(bad, 0) << f.name << ": " << bad << " of " << want.size()
                        << " integers differ, first at flat index " << first << " (want "
                        << int(want[std::max<int64_t>(first, 0)]) << ", have "
                        << int(have[std::max<int64_t>(first, 0)]) << ")";
      checked += int64_t(want.size());
      // The float QDQ chain (float32 convolution) lands on the same integers almost always.
      const auto q = qdq.at(f.replaced).data<uint8_t>();
      for (size_t i = 0; i < want.size(); ++i) qdq_differ += q[i] != have[i];
    }
  }
  std::printf(
      "%s act_bits %d: %zu folded layers, %lld integers bit-identical on %lld images; "
      "float QDQ chain differs on %lld\n",
      p.fixture.c_str(), p.act_bits, folded.size(), (long long)checked, (long long)p.images,
      (long long)qdq_differ);
  EXPECT_LT(double(qdq_differ), 0.01 * double(checked));
}

INSTANTIATE_TEST_SUITE_P(Images64, IntegerBitIdentity,
                         ::testing::Values(Case{"resnet", 8, 64}, Case{"resnet", 4, 64},
                                           Case{"resnet", 2, 64}, Case{"mobilenetv2", 8, 64},
                                           Case{"vgg_bn", 4, 64}, Case{"flatten_head", 8, 64}),
                         [](const auto& info) {
                           return info.param.fixture + "_a" + std::to_string(info.param.act_bits);
                         });
INSTANTIATE_TEST_SUITE_P(FullDataset, IntegerBitIdentity,
                         ::testing::Values(Case{"resnet", 8, 1000}, Case{"resnet", 4, 1000},
                                           Case{"resnet", 2, 1000}, Case{"mobilenetv2", 8, 1000},
                                           Case{"mobilenetv2", 4, 1000}, Case{"vgg_bn", 8, 1000},
                                           Case{"vgg_bn", 4, 1000}, Case{"flatten_head", 8, 1000},
                                           Case{"flatten_head", 4, 1000}),
                         [](const auto& info) {
                           return info.param.fixture + "_a" + std::to_string(info.param.act_bits);
                         });

class IntegerExport : public ::testing::TestWithParam<Case> {};

TEST_P(IntegerExport, CheckerAndOrtMatchExecutor) {
  const Case& p = GetParam();
  ASSERT_TRUE(testing::ortAvailable()) << "onnxruntime-node missing (npm ci)";
  auto built = build(p.fixture, p.act_bits);
  ASSERT_TRUE(built.isOk()) << built.status().message();
  Model& m = built->integer;
  int conv_integer = 0;
  for (const auto& n : m.graph->nodes()) conv_integer += n->isOp("ConvInteger");
  EXPECT_EQ(conv_integer, int(built->fold.folded.size()));
  ASSERT_GT(conv_integer, 0);
  // Expose the folded layers' uint8 inputs and outputs to check ORT's integers too.
  std::map<std::string, size_t> exposed;
  for (const auto& f : built->fold.folded)
    for (const std::string& v : {f.input, f.output})
      if (!exposed.count(v)) {
        exposed[v] = m.graph->outputs().size();
        m.graph->addOutput(m.graph->findValue(v));
      }
  testing::TempDir dir;
  const auto path = dir / "integer.onnx";
  ASSERT_TRUE(saveModel(m, path).isOk());
  ASSERT_LE(m.opsetVersion(""), 17);
  Status checked = checkModelFile(path);
  EXPECT_TRUE(checked.isOk()) << checked.message();
  auto reader = openSet("t10k-images-idx3-ubyte.gz");
  auto x = reader->readBatch(0, p.images);
  ASSERT_TRUE(x.isOk());
  auto ort = testing::runOrt(path, {{"input", *x}}, dir);
  ASSERT_TRUE(ort.isOk()) << ort.status().message();
  auto ex = exec::Executor::create(m, {});
  ASSERT_TRUE(ex.isOk()) << ex.status().message();
  std::vector<Tensor> feeds{*x};
  auto ours = (*ex)->run(std::move(feeds));
  ASSERT_TRUE(ours.isOk()) << ours.status().message();
  ASSERT_EQ(ort->size(), ours->size());
  EXPECT_EQ((*ort)[0].shape(), (Shape{p.images, 10}));
  EXPECT_LT(testing::relativeMaxError((*ort)[0], (*ours)[0]), 1e-3);
  // ORT's integers equal the reference computed from ORT's own layer inputs (the float layers
  // between them may round differently in ORT and here, so inputs are not compared).
  for (const auto& f : built->fold.folded) {
    const Tensor& in = (*ort)[exposed[f.input]];
    const Tensor& out = (*ort)[exposed[f.output]];
    ASSERT_EQ(in.dtype(), DType::kUInt8);
    ASSERT_EQ(out.dtype(), DType::kUInt8);
    const auto want = referenceOutput(referenceOf(*built->qdq.graph, f.name), in);
    const auto have = out.data<uint8_t>();
    ASSERT_EQ(int64_t(want.size()), out.numel());
    int64_t differ = 0;
    for (size_t k = 0; k < want.size(); ++k) differ += want[k] != have[k];
    EXPECT_EQ(differ, 0) << f.name << ": ORT's integers differ from the reference";
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, IntegerExport,
                         ::testing::Values(Case{"resnet", 8, 64}, Case{"resnet", 2, 64},
                                           Case{"mobilenetv2", 4, 64}, Case{"vgg_bn", 8, 64},
                                           Case{"flatten_head", 4, 64}),
                         [](const auto& info) {
                           return info.param.fixture + "_a" + std::to_string(info.param.act_bits);
                         });

// --act-bits 4 in QDQ: every activation quantizer's integers stay on the 16-level grid and use it.
TEST(ActBits, QdqActivationsStayOnTheKBitGrid) {
  auto built = build("resnet", 4);
  ASSERT_TRUE(built.isOk()) << built.status().message();
  std::set<std::string> quantized;
  int clips = 0;
  for (const auto& n : built->qdq.graph->nodes()) {
    if (!n->isOp("QuantizeLinear")) continue;
    quantized.insert(n->output(0)->name());
    clips += n->input(0)->producer() && n->input(0)->producer()->isOp("Clip");
  }
  EXPECT_EQ(clips, int(quantized.size()));
  auto got = capture(built->qdq, quantized, 0, 16);
  ASSERT_EQ(got.size(), quantized.size());
  for (const auto& [name, t] : got) {
    std::set<int> levels;
    for (uint8_t v : t.data<uint8_t>()) levels.insert(v);
    EXPECT_LE(*levels.rbegin(), 15) << name;
    EXPECT_GE(levels.size(), 8u) << name;
  }
}

TEST(QuantizeCli, IntegerFormatAndActBitsFlags) {
  testing::TempDir dir;
  const std::string model = testing::quote(testing::sourcePath("models/resnet.onnx"));
  const std::string calib = std::string(" --calib ") + kData +
                            "train-images-idx3-ubyte.gz --mean 0.2860 --std 0.3530 --calib-size "
                            "32 --sqnr-samples 0 -o ";
  auto r = testing::runCli("quantize " + model + " --format integer --act-bits 4 --json" + calib +
                           testing::quote(dir / "i.onnx"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["format"], "integer");
  EXPECT_EQ(j["act_bits"], 4);
  int folded = 0;
  for (const auto& l : j["layers"]) {
    folded += l["op"] == "ConvInteger";
    if (l["op"] != "Gemm") {
      EXPECT_EQ(l["act_bits"], 4) << l["name"];
    }
  }
  EXPECT_EQ(folded, 5);
  for (const char* bad : {" --format qoperator --act-bits 4", " --format integer --weight-bits 4",
                          " --format integer --symmetric-activations", " --act-bits 3"}) {
    auto b = testing::runCli("quantize " + model + bad + calib + testing::quote(dir / "b.onnx"));
    EXPECT_EQ(b.exit_code, 2) << bad << ": " << b.err;
    EXPECT_FALSE(std::filesystem::exists(dir / "b.onnx")) << bad;
  }
}

// Where it must not fire: a Conv whose output reaches a residual Add (or a shortcut Conv whose
// output does) stays QDQ, reading the integer tensors through DequantizeLinear.
TEST(IntegerFold, ResidualOutputsStayQdq) {
  auto built = build("resnet", 8);
  ASSERT_TRUE(built.isOk()) << built.status().message();
  std::set<std::string> folded, skipped;
  for (const auto& f : built->fold.folded) folded.insert(f.name);
  for (const auto& [name, why] : built->fold.skipped) {
    skipped.insert(name);
    if (name.find("conv2") != std::string::npos) {
      EXPECT_NE(why.find("Add"), std::string::npos) << name << ": " << why;
    }
  }
  EXPECT_EQ(folded,
            (std::set<std::string>{"/stem/stem.0/Conv", "/layer1/conv1/Conv", "/layer2/conv1/Conv",
                                   "/layer3/conv1/Conv", "/layer4/conv1/Conv"}));
  EXPECT_EQ(skipped.size(), 6u);
  int float_convs = 0;
  for (const auto& n : built->integer.graph->nodes()) {
    if (!n->isOp("Conv")) continue;
    ++float_convs;
    EXPECT_TRUE(skipped.count(n->name())) << n->name();
    ASSERT_NE(n->input(0)->producer(), nullptr);
    EXPECT_TRUE(n->input(0)->producer()->isOp("DequantizeLinear")) << n->name();
  }
  EXPECT_EQ(float_convs, 6);
}

TEST(IntegerFold, RefusesBadActBitsAndOldOpset) {
  Model m;
  m.opset_imports.push_back({"", 13});
  EXPECT_FALSE(quant::foldIntegerLayers(m, 3).isOk());
  m.opset_imports[0].version = 11;
  EXPECT_EQ(quant::foldIntegerLayers(m, 8).status().code(), StatusCode::kUnsupported);
}

}  // namespace
}  // namespace nnc
