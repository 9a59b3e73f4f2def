// Every op's backward against central finite differences of a double-precision loss
// L = sum_o sum(Y_o * R_o) (R random), over small random shapes: strided, grouped, dilated,
// padded and depthwise convolutions, broadcasting, every data-movement op. Analytic gradients come
// from GradientTape::backward (parameters: trainable initializers; data inputs: kept activation
// gradients); numeric ones from GradientTape::infer with one element moved by +-h.

#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <random>

#include "graph_input.h"
#include "nncompress/train/tape.h"

namespace nnc::train {
namespace {

enum class Kind { kData, kParam, kConst, kOmitted };

struct In {
  Kind kind = Kind::kData;
  Shape shape;
  std::optional<Tensor> value;  // kConst (or fixed data); random otherwise
  float lo = -1.f, hi = 1.f;    // random range
  float away = 0.f;             // |x| < away pushed out (keeps samples off kinks)
};

In data(Shape s, float away = 0.f) { return In{Kind::kData, std::move(s), {}, -1.f, 1.f, away}; }
In param(Shape s) { return In{Kind::kParam, std::move(s)}; }
In positive(Kind k, Shape s) { return In{k, std::move(s), {}, 0.5f, 1.5f}; }
In constant(Tensor t) { return In{Kind::kConst, t.shape(), std::move(t)}; }
In omitted() { return In{Kind::kOmitted}; }
Tensor ints(std::vector<int64_t> v) {
  return Tensor::fromVector<int64_t>({static_cast<int64_t>(v.size())}, v);
}
Tensor floats(Shape s, std::vector<float> v) { return Tensor::fromVector<float>(std::move(s), v); }

struct Case {
  std::string op;
  std::vector<In> inputs;
  std::vector<Attribute> attrs = {};
  int64_t opset = 13;
  int outputs = 1;
  float h = 1e-2f;
};

struct Built {
  Model model;
  std::vector<std::string> data_names, param_names;
  std::vector<Tensor> data_values;
};

Built build(const Case& c, std::mt19937& rng) {
  Built b;
  b.model.opset_imports = {{"", c.opset}};
  Graph& g = *b.model.graph;
  std::vector<Value*> ins;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const In& in = c.inputs[i];
    if (in.kind == Kind::kOmitted) {
      ins.push_back(nullptr);
      continue;
    }
    Tensor t = in.value ? *in.value : Tensor(DType::kFloat32, in.shape);
    if (!in.value) {
      std::uniform_real_distribution<float> u(in.lo, in.hi);
      for (float& v : t.mutableData<float>()) {
        v = u(rng);
        if (std::abs(v) < in.away) v += v < 0 ? -in.away : in.away;
      }
    }
    if (in.kind == Kind::kData) {
      Value* v = testing::addFloatInput(g, "x" + std::to_string(i));
      ins.push_back(v);
      b.data_names.push_back(v->name());
      b.data_values.push_back(std::move(t));
    } else {
      Value* v = g.addInitializer("w" + std::to_string(i), std::move(t));
      ins.push_back(v);
      if (in.kind == Kind::kParam) b.param_names.push_back(v->name());
    }
  }
  std::vector<std::string> outs;
  for (int o = 0; o < c.outputs; ++o) outs.push_back("y" + std::to_string(o));
  Node* node = g.addNode(c.op, ins, outs);
  for (const Attribute& a : c.attrs) node->setAttribute(a);
  for (Value* v : node->outputs()) g.addOutput(v);
  return b;
}

double lossOf(const std::vector<Tensor>& outs, const std::vector<Tensor>& r) {
  double l = 0;
  for (size_t o = 0; o < outs.size(); ++o) {
    auto y = outs[o].data<float>();
    auto w = r[o].data<float>();
    for (size_t i = 0; i < y.size(); ++i) l += double(y[i]) * w[i];
  }
  return l;
}

void expectClose(const Tensor& analytic, const std::vector<double>& numeric,
                 const std::string& what) {
  auto a = analytic.data<float>();
  ASSERT_EQ(a.size(), numeric.size()) << what;
  int bad = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double tol = 1e-2 + 1e-2 * std::abs(numeric[i]);
    if (std::abs(a[i] - numeric[i]) > tol && bad++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: analytic " << a[i] << ", numeric " << numeric[i];
  }
}

void gradCheck(const Case& c, uint32_t seed = 1, int threads = 1) {
  SCOPED_TRACE(c.op);
  std::mt19937 rng(seed);
  Built b = build(c, rng);
  TapeOptions opt;
  opt.num_threads = threads;
  opt.trainable = b.param_names;  // empty: the defaults, none of which these cases have
  opt.keep_activation_grads = b.data_names;
  auto tape_or = GradientTape::create(b.model, opt);
  ASSERT_TRUE(tape_or.isOk()) << tape_or.status().toString();
  auto tape = std::move(tape_or).value();
  auto outs = tape->forward(b.data_values);
  ASSERT_TRUE(outs.isOk()) << outs.status().toString();
  std::vector<Tensor> r;
  std::normal_distribution<float> nd;
  for (const Tensor& y : outs.value()) {
    Tensor t(DType::kFloat32, y.shape());
    for (float& v : t.mutableData<float>()) v = nd(rng);
    r.push_back(t);
  }
  tape->zeroGrad();
  ASSERT_TRUE(tape->backward(r).isOk());
  auto loss = [&](std::vector<Tensor> x) {
    auto o = tape->infer(std::move(x));
    EXPECT_TRUE(o.isOk()) << o.status().toString();
    return o.isOk() ? lossOf(o.value(), r) : 0.0;
  };
  for (size_t d = 0; d < b.data_names.size(); ++d) {
    std::vector<double> numeric;
    for (int64_t i = 0; i < b.data_values[d].numel(); ++i) {
      auto x = b.data_values;
      float& v = x[d].mutableData<float>()[i];
      const float v0 = v;
      v = v0 + c.h;
      const double up = loss(x);
      v = v0 - c.h;
      numeric.push_back((up - loss(x)) / (2.0 * c.h));
    }
    const Tensor* g = tape->activationGrad(b.data_names[d]);
    ASSERT_NE(g, nullptr) << "no gradient for " << b.data_names[d];
    expectClose(*g, numeric, "d" + b.data_names[d]);
  }
  for (Parameter& p : tape->parameters()) {
    std::vector<double> numeric;
    for (int64_t i = 0; i < p.value.numel(); ++i) {
      float& v = p.value.mutableData<float>()[i];
      const float v0 = v;
      v = v0 + c.h;
      const double up = loss(b.data_values);
      v = v0 - c.h;
      const double down = loss(b.data_values);
      v = v0;
      numeric.push_back((up - down) / (2.0 * c.h));
    }
    expectClose(p.grad, numeric, "d" + p.name);
  }
}

using A = Attribute;

TEST(TrainGradCheck, Conv) {
  gradCheck({"Conv",
             {data({2, 3, 5, 5}), param({4, 3, 3, 3}), param({4})},
             {A::makeInts("pads", {1, 1, 1, 1})}});
  gradCheck(
      {"Conv",
       {data({2, 4, 7, 6}), param({6, 2, 3, 3}), param({6})},
       {A::makeInt("group", 2), A::makeInts("strides", {2, 2}), A::makeInts("pads", {1, 0, 2, 1})}},
      2, 2);
  gradCheck({"Conv",
             {data({2, 3, 7, 7}), param({3, 1, 3, 3})},
             {A::makeInt("group", 3), A::makeInts("dilations", {2, 2}),
              A::makeInts("pads", {2, 2, 2, 2})}});
  // 3x3 over 5 channels (weight-gradient tiles of 3 and 2 channels), 17 outputs (a partial block).
  gradCheck({"Conv",
             {data({2, 5, 6, 6}), param({17, 5, 3, 3}), param({17})},
             {A::makeInts("pads", {1, 1, 1, 1})}});
  gradCheck({"Conv", {data({2, 4, 4, 4}), param({8, 4, 1, 1}), param({8})}});  // pointwise
  gradCheck({"Conv",
             {data({1, 2, 6, 5}), param({3, 2, 2, 3})},
             {A::makeString("auto_pad", "SAME_UPPER"), A::makeInts("strides", {2, 1})}});
  gradCheck({"Conv",
             {data({2, 2, 9}), param({3, 2, 3}), param({3})},  // 1-D
             {A::makeInts("strides", {2}), A::makeInts("pads", {1, 1})}});
  // Strided input gradients by phases: a 1x1 kernel (phases without taps), stride 3 over a 3x3
  // kernel (one tap per phase), a 5x5 kernel at stride 2 with pads 2 and 1 (two and three taps);
  // no phase form (the im2col path): a leading pad that shifts a phase past dY's first row, a pad
  // past the kernel.
  gradCheck({"Conv",
             {data({2, 3, 7, 6}), param({5, 3, 1, 1}), param({5})},
             {A::makeInts("strides", {2, 2})}},
            2, 2);
  gradCheck({"Conv",
             {data({2, 2, 8, 7}), param({3, 2, 3, 3})},
             {A::makeInts("strides", {3, 3}), A::makeInts("pads", {0, 0, 2, 1})}});
  gradCheck({"Conv",
             {data({2, 2, 8, 7}), param({3, 2, 3, 3})},
             {A::makeInts("strides", {3, 3}), A::makeInts("pads", {1, 0, 1, 2})}});
  gradCheck(
      {"Conv",
       {data({2, 4, 9, 8}), param({18, 2, 5, 5}), param({18})},
       {A::makeInt("group", 2), A::makeInts("strides", {2, 2}), A::makeInts("pads", {2, 1, 2, 1})}},
      2, 2);
  gradCheck({"Conv",
             {data({1, 2, 4, 4}), param({3, 2, 2, 2})},
             {A::makeInts("strides", {2, 2}), A::makeInts("pads", {3, 3, 3, 3})}});
  // 20 and 24 input channels without groups: dX by a 16-channel block and an 8-lane tail.
  gradCheck(
      {"Conv", {data({2, 20, 4, 5}), param({3, 20, 3, 3})}, {A::makeInts("pads", {1, 1, 1, 1})}}, 2,
      2);
  gradCheck({"Conv",
             {data({1, 24, 5, 4}), param({2, 24, 3, 3}), param({2})},
             {A::makeInts("strides", {2, 2}), A::makeInts("pads", {1, 1, 1, 1})}});
  // Depthwise with a channel multiplier, parallel over samples.
  gradCheck({"Conv",
             {data({3, 2, 6, 6}), param({4, 1, 3, 3}), param({4})},
             {A::makeInt("group", 2), A::makeInts("pads", {1, 1, 1, 1})}},
            3, 2);
}

TEST(TrainGradCheck, ConvTranspose) {
  gradCheck({"ConvTranspose",
             {data({2, 3, 3, 4}), param({3, 2, 3, 3}), param({2})},
             {A::makeInts("strides", {2, 2}), A::makeInts("pads", {1, 1, 1, 1}),
              A::makeInts("output_padding", {1, 0})}});
  gradCheck({"ConvTranspose",
             {data({1, 4, 3, 3}), param({4, 1, 2, 2})},
             {A::makeInt("group", 2), A::makeInts("dilations", {2, 1})}});
}

TEST(TrainGradCheck, GemmAndMatMul) {
  gradCheck({"Gemm", {data({3, 5}), param({4, 5}), param({4})}, {A::makeInt("transB", 1)}});
  gradCheck({"Gemm",
             {data({5, 3}), param({5, 4}), param({3, 4})},
             {A::makeInt("transA", 1), A::makeFloat("alpha", 0.5f), A::makeFloat("beta", 2.f)}});
  gradCheck({"Gemm",
             {data({3, 5}), data({4, 5}), param({1, 4})},
             {A::makeInt("transA", 0), A::makeInt("transB", 1)}});
  gradCheck({"MatMul", {data({2, 3, 4, 5}), param({5, 6})}});
  gradCheck({"MatMul", {data({2, 1, 3, 4}), data({3, 4, 2})}});
  gradCheck({"MatMul", {data({4}), param({4, 3})}});
}

TEST(TrainGradCheck, BatchNormAndActivations) {
  gradCheck({"BatchNormalization",
             {data({2, 3, 4, 4}), param({3}), param({3}), In{Kind::kConst, {3}},
              positive(Kind::kConst, {3})},
             {A::makeFloat("epsilon", 1e-3f)}});
  gradCheck({"Relu", {data({2, 3, 4}, 0.05f)}});
  gradCheck({"LeakyRelu", {data({2, 3, 4}, 0.05f)}, {A::makeFloat("alpha", 0.1f)}});
  gradCheck({"PRelu", {data({2, 3, 4, 4}, 0.05f), param({3, 1, 1})}});
  gradCheck({"Clip",
             {In{Kind::kData, {3, 4}, {}, -2.f, 2.f}, constant(floats({}, {-0.75f})),
              constant(floats({}, {0.5f}))}});
  gradCheck({"Clip",
             {In{Kind::kData, {3, 4}, {}, -2.f, 2.f}},
             {A::makeFloat("min", -1.f), A::makeFloat("max", 1.f)},
             6});
  gradCheck({"Sigmoid", {data({2, 5})}});
  gradCheck({"Tanh", {data({2, 5})}});
  gradCheck(
      {"HardSigmoid", {In{Kind::kData, {4, 5}, {}, -4.f, 4.f}}, {A::makeFloat("alpha", 0.25f)}});
  gradCheck({"HardSwish", {In{Kind::kData, {4, 5}, {}, -5.f, 5.f}}, {}, 14});
  gradCheck({"Softmax", {data({2, 3, 4})}});
  gradCheck({"Softmax", {data({2, 3, 4})}, {A::makeInt("axis", 1)}, 11});
  gradCheck({"LogSoftmax", {data({3, 5})}});
}

TEST(TrainGradCheck, BroadcastArithmetic) {
  for (const char* op : {"Add", "Sub", "Mul"}) {
    gradCheck({op, {data({2, 3, 4}), data({2, 3, 4})}});
    gradCheck({op, {data({2, 3, 4, 2}), data({3, 1, 1})}});
    gradCheck({op, {data({3, 1}), data({1, 4})}});
  }
  gradCheck({"Div", {data({2, 3, 4}), positive(Kind::kData, {3, 4})}});
  gradCheck({"Div", {data({2, 3}), positive(Kind::kData, {2, 3})}});
}

TEST(TrainGradCheck, DataMovement) {
  gradCheck({"Concat", {data({2, 2, 3}), data({2, 4, 3})}, {A::makeInt("axis", 1)}});
  gradCheck({"Split", {data({2, 5, 3}), constant(ints({2, 3}))}, {A::makeInt("axis", 1)}, 13, 2});
  gradCheck({"Split", {data({6, 2})}, {}, 13, 3});
  gradCheck({"Slice",
             {data({4, 6, 5}), constant(ints({1, -1})), constant(ints({4, 0})),
              constant(ints({1, 2})), constant(ints({2, -2}))}});
  gradCheck({"Pad", {data({2, 3, 4}), constant(ints({0, 1, 2, 0, 2, 1}))}});
  gradCheck({"Pad",
             {data({1, 3, 4}), constant(ints({0, 1, 2, 0, 1, 1}))},
             {A::makeString("mode", "reflect")}});
  gradCheck({"Pad", {data({1, 5, 4}), constant(ints({0, -1, 1, 0, 1, -1}))}});
  gradCheck({"Transpose", {data({2, 3, 4})}, {A::makeInts("perm", {2, 0, 1})}});
  gradCheck({"Flatten", {data({2, 3, 4})}, {A::makeInt("axis", 2)}});
  gradCheck({"Reshape", {data({2, 3, 4}), constant(ints({4, -1}))}});
  gradCheck({"Squeeze", {data({2, 1, 4}), constant(ints({1}))}});
  gradCheck({"Unsqueeze", {data({2, 4}), constant(ints({0, 2}))}});
  gradCheck({"Identity", {data({3, 2})}});
  gradCheck({"Dropout", {data({3, 2})}, {}, 13, 1});
  gradCheck({"Resize",
             {data({1, 2, 3, 2}), omitted(), constant(floats({4}, {1, 1, 2, 3}))},
             {A::makeString("mode", "nearest")}});
  gradCheck({"Resize",
             {data({1, 2, 4, 5}), omitted(), constant(floats({4}, {1, 1, 0.5f, 0.6f}))},
             {A::makeString("mode", "nearest")}});
}

TEST(TrainGradCheck, MathAndReductions) {
  gradCheck({"Erf", {data({3, 4})}});
  gradCheck({"Sqrt", {positive(Kind::kData, {3, 4})}});
  gradCheck({"Exp", {data({3, 4})}});
  gradCheck({"Log", {positive(Kind::kData, {3, 4})}});
  gradCheck({"Neg", {data({3, 4})}});
  gradCheck({"Pow", {positive(Kind::kData, {2, 3}), constant(floats({}, {2.f}))}});
  gradCheck({"Pow", {positive(Kind::kData, {2, 3}), positive(Kind::kData, {3})}});
  gradCheck({"ReduceMean", {data({2, 3, 4})}, {A::makeInts("axes", {-1})}});
  gradCheck({"ReduceMean",
             {data({2, 3, 4, 2})},
             {A::makeInts("axes", {2, 3}), A::makeInt("keepdims", 0)}});
  gradCheck({"ReduceMean", {data({2, 3, 4}), constant(ints({1}))}, {}, 18});
  gradCheck({"ReduceSum", {data({2, 3, 4}), constant(ints({0, 2}))}, {A::makeInt("keepdims", 0)}});
  gradCheck({"ReduceSum", {data({2, 3})}});
}

TEST(TrainGradCheck, Pooling) {
  gradCheck({"MaxPool",
             {data({2, 2, 6, 6})},
             {A::makeInts("kernel_shape", {3, 3}), A::makeInts("strides", {2, 2}),
              A::makeInts("pads", {1, 1, 1, 1})},
             13,
             1,
             1e-3f});  // small steps: no near-tie of a window changes its arg-max
  gradCheck({"MaxPool",
             {data({1, 2, 5, 7})},
             {A::makeInts("kernel_shape", {2, 2}), A::makeInts("strides", {2, 2}),
              A::makeInt("ceil_mode", 1)},
             13,
             1,
             1e-3f});
  gradCheck({"AveragePool",
             {data({2, 2, 5, 5})},
             {A::makeInts("kernel_shape", {3, 3}), A::makeInts("strides", {2, 2}),
              A::makeInts("pads", {1, 1, 1, 1})}});
  gradCheck({"AveragePool",
             {data({1, 2, 5, 5})},
             {A::makeInts("kernel_shape", {3, 2}), A::makeInts("pads", {1, 0, 1, 1}),
              A::makeInt("count_include_pad", 1)}});
  gradCheck({"AveragePool",
             {data({1, 2, 6})},
             {A::makeInts("kernel_shape", {2}), A::makeInts("strides", {2})}});
  gradCheck({"GlobalAveragePool", {data({2, 3, 4, 5})}});
}

}  // namespace
}  // namespace nnc::train
