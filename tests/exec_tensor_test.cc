// Data-movement and pooling kernels against naive references: Transpose, Slice, Pad, Tile,
// Expand, DepthToSpace over random shapes and several dtypes (single- and multi-threaded, so the
// coalesced / blocked / parallel paths are all taken), dtype-generic Concat / Gather / Split on
// int64, Reshape's 0 / -1 / allowzero, and MaxPool / AveragePool against direct loops.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <optional>
#include <random>

#include "graph_input.h"
#include "nncompress/exec/executor.h"
#include "nncompress/exec/kernel.h"
#include "nncompress/ir/graph.h"

namespace nnc {
namespace {

using exec::KernelBuildContext;
using exec::KernelRegistry;
using exec::RunContext;

// Builds one node of `op` with the given attributes and runs its kernel once.
// std::nullopt inputs are omitted optional inputs.
StatusOr<std::vector<Tensor>> runOp(const std::string& op,
                                    const std::vector<std::optional<Tensor>>& inputs,
                                    const std::vector<Attribute>& attrs, int num_outputs = 1,
                                    int64_t opset = 18, int threads = 1) {
  Model model;
  Graph& g = *model.graph;
  std::vector<Value*> ins;
  for (size_t i = 0; i < inputs.size(); ++i)
    ins.push_back(inputs[i] ? g.createUniqueValue("in" + std::to_string(i)) : nullptr);
  std::vector<std::string> out_names;
  for (int i = 0; i < num_outputs; ++i) out_names.push_back("out" + std::to_string(i));
  Node* node = g.addNode(op, ins, out_names);
  for (const Attribute& a : attrs) node->setAttribute(a);
  const exec::KernelFactory* factory = KernelRegistry::builtin().find(*node);
  if (!factory) return unsupported("no kernel for " + op);
  NNC_ASSIGN_OR_RETURN(std::unique_ptr<exec::Kernel> kernel,
                       (*factory)(KernelBuildContext{*node, opset}));
  std::vector<const Tensor*> ptrs;
  for (const auto& t : inputs) ptrs.push_back(t ? &*t : nullptr);
  // Outputs pre-filled with NaN garbage: kernels must assign them completely.
  std::vector<Tensor> outs;
  for (int i = 0; i < num_outputs; ++i) outs.push_back(Tensor::fromVector<float>({2}, {NAN, NAN}));
  RunContext ctx;
  ctx.num_threads = threads;
  NNC_RETURN_IF_ERROR(kernel->run(ptrs, outs, ctx));
  return outs;
}

Tensor ints(const std::vector<int64_t>& v) {
  return Tensor::fromVector<int64_t>({static_cast<int64_t>(v.size())}, v);
}

Tensor randomTensor(DType dtype, const Shape& shape, std::mt19937& rng) {
  Tensor t(dtype, shape);
  if (dtype == DType::kFloat32) {
    std::uniform_real_distribution<float> u(-10.f, 10.f);
    for (float& v : t.mutableData<float>()) v = u(rng);
  } else {
    // Any bit pattern is fine for data movement.
    for (char& c : t.mutableBytes()) c = static_cast<char>(rng());
  }
  return t;
}

std::vector<int64_t> stridesOf(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (size_t d = s.size(); d-- > 1;) st[d - 1] = st[d] * s[d];
  return st;
}

// Multi-index of linear index i in shape s.
std::vector<int64_t> unravel(int64_t i, const Shape& s) {
  std::vector<int64_t> idx(s.size());
  for (size_t d = s.size(); d-- > 0;) {
    idx[d] = i % s[d];
    i /= s[d];
  }
  return idx;
}

// Reference output of a gather-like op: out[i] = in[src(i)] element bytes, or `fill` when
// src(i) < 0. The buffer starts as NaN-like garbage so unwritten elements show.
template <typename SrcFn>
Tensor reference(const Tensor& in, const Shape& out_shape, SrcFn src,
                 const std::string& fill = {}) {
  Tensor out(in.dtype(), out_shape);
  const size_t es = static_cast<size_t>(dtypeBits(in.dtype()) / 8);
  std::memset(out.mutableBytes().data(), 0xff, out.mutableBytes().size());
  for (int64_t i = 0; i < out.numel(); ++i) {
    const int64_t s = src(unravel(i, out_shape));
    if (s >= 0)
      std::memcpy(out.mutableBytes().data() + i * es, in.bytes().data() + s * es, es);
    else
      std::memcpy(out.mutableBytes().data() + i * es, fill.data(), es);
  }
  return out;
}

#define EXPECT_TENSOR_EQ(want, got)                                         \
  do {                                                                      \
    EXPECT_EQ((want).dtype(), (got).dtype());                               \
    EXPECT_EQ(shapeToString((want).shape()), shapeToString((got).shape())); \
    EXPECT_TRUE((want).bytes() == (got).bytes()) << "contents differ";      \
  } while (0)

const DType kMoveTypes[] = {DType::kFloat32, DType::kInt64, DType::kInt8, DType::kFloat16,
                            DType::kBool};

TEST(ExecTensorTest, TransposeMatchesNaiveForAllRank4PermsAndRandomShapes) {
  std::mt19937 rng(1);
  // Every permutation of a 4-D tensor big enough for the blocked path, threaded and not.
  std::vector<int64_t> perm = {0, 1, 2, 3};
  const Shape shape4 = {2, 37, 19, 23};
  do {
    for (DType dt : {DType::kFloat32, DType::kInt8}) {
      const Tensor x = randomTensor(dt, shape4, rng);
      const auto xs = stridesOf(shape4);
      Shape os(4);
      for (int a = 0; a < 4; ++a) os[a] = shape4[perm[a]];
      const Tensor want = reference(x, os, [&](const std::vector<int64_t>& o) {
        int64_t s = 0;
        for (int a = 0; a < 4; ++a) s += o[a] * xs[perm[a]];
        return s;
      });
      for (int threads : {1, 2}) {
        auto got = runOp("Transpose", {x}, {Attribute::makeInts("perm", perm)}, 1, 13, threads);
        ASSERT_TRUE(got.isOk()) << got.status().toString();
        EXPECT_TENSOR_EQ(want, (*got)[0]);
      }
    }
  } while (std::next_permutation(perm.begin(), perm.end()));

  // Large NCHW <-> NHWC on several element widths: the threaded blocked path.
  const Shape big = {3, 64, 33, 35};
  for (const std::vector<int64_t>& p : {std::vector<int64_t>{0, 2, 3, 1}, {0, 3, 1, 2}}) {
    for (DType dt : {DType::kFloat32, DType::kFloat16, DType::kInt64, DType::kBool}) {
      const Tensor x = randomTensor(dt, big, rng);
      const auto xs = stridesOf(big);
      Shape os(4);
      for (int a = 0; a < 4; ++a) os[a] = big[p[a]];
      const Tensor want = reference(x, os, [&](const std::vector<int64_t>& o) {
        int64_t s = 0;
        for (int a = 0; a < 4; ++a) s += o[a] * xs[p[a]];
        return s;
      });
      auto got = runOp("Transpose", {x}, {Attribute::makeInts("perm", p)}, 1, 13, 2);
      ASSERT_TRUE(got.isOk()) << got.status().toString();
      EXPECT_TENSOR_EQ(want, (*got)[0]);
    }
  }

  // Random ranks 1-5 and dtypes; default perm (reverse) on some.
  for (int iter = 0; iter < 60; ++iter) {
    const int rank = 1 + static_cast<int>(rng() % 5);
    Shape shape(rank);
    for (auto& d : shape) d = 1 + static_cast<int64_t>(rng() % 7);
    std::vector<int64_t> p(rank);
    std::iota(p.begin(), p.end(), 0);
    std::shuffle(p.begin(), p.end(), rng);
    const bool default_perm = iter % 4 == 0;
    if (default_perm) std::sort(p.rbegin(), p.rend());  // what an absent perm means
    const DType dt = kMoveTypes[iter % 5];
    const Tensor x = randomTensor(dt, shape, rng);
    const auto xs = stridesOf(shape);
    Shape os(rank);
    for (int a = 0; a < rank; ++a) os[a] = shape[p[a]];
    const Tensor want = reference(x, os, [&](const std::vector<int64_t>& o) {
      int64_t s = 0;
      for (int a = 0; a < rank; ++a) s += o[a] * xs[p[a]];
      return s;
    });
    std::vector<Attribute> attrs;
    if (!default_perm) attrs.push_back(Attribute::makeInts("perm", p));
    auto got = runOp("Transpose", {x}, attrs, 1, 13, 1 + iter % 2);
    ASSERT_TRUE(got.isOk()) << got.status().toString();
    EXPECT_TENSOR_EQ(want, (*got)[0]);
  }
}

// Indices an ONNX Slice selects on one axis, straight from the spec's wording.
std::vector<int64_t> sliceIndices(int64_t dim, int64_t start, int64_t end, int64_t step) {
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  std::vector<int64_t> idx;
  if (step > 0) {
    start = std::clamp<int64_t>(start, 0, dim);
    end = std::clamp<int64_t>(end, 0, dim);
    for (int64_t i = start; i < end; i += step) idx.push_back(i);
  } else {
    start = std::clamp<int64_t>(start, 0, dim - 1);
    end = std::clamp<int64_t>(end, -1, dim - 1);
    for (int64_t i = start; i > end; i += step) idx.push_back(i);
  }
  return idx;
}

TEST(ExecTensorTest, SliceMatchesNaiveWithNegativeClampedAndStepped) {
  std::mt19937 rng(2);
  for (int iter = 0; iter < 200; ++iter) {
    const int rank = 1 + static_cast<int>(rng() % 4);
    Shape shape(rank);
    for (auto& d : shape) d = static_cast<int64_t>(rng() % 9);  // zero-size axes too
    const DType dt = kMoveTypes[iter % 5];
    const Tensor x = randomTensor(dt, shape, rng);
    std::vector<int64_t> starts, ends, axes, steps;
    std::vector<std::vector<int64_t>> picks(rank);
    for (int a = 0; a < rank; ++a) {
      picks[a].resize(shape[a]);
      std::iota(picks[a].begin(), picks[a].end(), 0);
    }
    for (int a = 0; a < rank; ++a) {
      if (rng() % 3 == 0) continue;  // axis left whole
      auto pick = [&]() -> int64_t {
        switch (rng() % 6) {
          case 0:
            return std::numeric_limits<int64_t>::max();
          case 1:
            return std::numeric_limits<int64_t>::min();
          case 2:
            return -static_cast<int64_t>(rng() % 12);
          default:
            return static_cast<int64_t>(rng() % 12);
        }
      };
      int64_t step = 1 + static_cast<int64_t>(rng() % 3);
      if (rng() % 2) step = -step;
      const int64_t s = pick(), e = pick();
      starts.push_back(s);
      ends.push_back(e);
      steps.push_back(step);
      axes.push_back(rng() % 2 ? a : a - rank);  // negative axes too
      picks[a] = sliceIndices(shape[a], s, e, step);
    }
    Shape os(rank);
    for (int a = 0; a < rank; ++a) os[a] = static_cast<int64_t>(picks[a].size());
    const auto xs = stridesOf(shape);
    const Tensor want = reference(x, os, [&](const std::vector<int64_t>& o) {
      int64_t s = 0;
      for (int a = 0; a < rank; ++a) s += picks[a][o[a]] * xs[a];
      return s;
    });
    auto got = runOp("Slice", {x, ints(starts), ints(ends), ints(axes), ints(steps)}, {}, 1, 13,
                     1 + iter % 2);
    ASSERT_TRUE(got.isOk()) << got.status().toString();
    EXPECT_TENSOR_EQ(want, (*got)[0]);
  }
  // Opset 1 form: attributes, no steps.
  const Tensor x = Tensor::fromVector<float>({2, 4}, {0, 1, 2, 3, 4, 5, 6, 7});
  auto got = runOp("Slice", {x},
                   {Attribute::makeInts("starts", {1, 0}), Attribute::makeInts("ends", {2, -1}),
                    Attribute::makeInts("axes", {0, 1})},
                   1, 1);
  ASSERT_TRUE(got.isOk()) << got.status().toString();
  EXPECT_TENSOR_EQ(Tensor::fromVector<float>({1, 3}, {4, 5, 6}), (*got)[0]);
}

// Reflect by walking: bounce off the ends without repeating them.
int64_t reflectWalk(int64_t j, int64_t n) {
  if (n == 1) return 0;
  int64_t pos = 0, dir = 1;
  const int64_t steps = j >= 0 ? j : -j;
  dir = j >= 0 ? 1 : -1;
  for (int64_t k = 0; k < steps; ++k) {
    if (pos + dir < 0 || pos + dir >= n) dir = -dir;
    pos += dir;
  }
  return pos;
}

TEST(ExecTensorTest, PadMatchesNaiveForEveryModeAndNegativePads) {
  std::mt19937 rng(3);
  const char* modes[] = {"constant", "reflect", "edge", "wrap"};
  for (int iter = 0; iter < 160; ++iter) {
    const std::string mode = modes[iter % 4];
    const int rank = 1 + static_cast<int>(rng() % 4);
    Shape shape(rank);
    for (auto& d : shape) d = 2 + static_cast<int64_t>(rng() % 5);
    const DType dt = kMoveTypes[(iter / 4) % 5];
    const Tensor x = randomTensor(dt, shape, rng);
    std::vector<int64_t> pads(2 * rank);
    Shape os(rank);
    std::vector<int64_t> lo(rank), n(rank), before(rank);
    for (int a = 0; a < rank; ++a) {
      // Negative pads may crop up to all but one element; reflect pads stay within one bounce.
      int64_t b = static_cast<int64_t>(rng() % 5) - 1, e = static_cast<int64_t>(rng() % 5) - 1;
      if (b < 0 && e < 0 && shape[a] <= 2) b = 0;
      pads[a] = b;
      pads[a + rank] = e;
      lo[a] = std::max<int64_t>(0, -b);
      n[a] = shape[a] - lo[a] - std::max<int64_t>(0, -e);
      before[a] = std::max<int64_t>(0, b);
      os[a] = n[a] + before[a] + std::max<int64_t>(0, e);
    }
    const std::string fill(static_cast<size_t>(dtypeBits(dt) / 8), '\x2a');
    Tensor value(dt, {});
    std::memcpy(value.mutableBytes().data(), fill.data(), fill.size());
    const auto xs = stridesOf(shape);
    const Tensor want = reference(
        x, os,
        [&](const std::vector<int64_t>& o) -> int64_t {
          int64_t s = 0;
          for (int a = 0; a < rank; ++a) {
            int64_t j = o[a] - before[a];
            if (j < 0 || j >= n[a]) {
              if (mode == "constant") return -1;
              if (mode == "edge") j = std::clamp<int64_t>(j, 0, n[a] - 1);
              if (mode == "wrap") j = ((j % n[a]) + n[a]) % n[a];
              if (mode == "reflect") j = reflectWalk(j, n[a]);
            }
            s += (lo[a] + j) * xs[a];
          }
          return s;
        },
        fill);
    std::vector<std::optional<Tensor>> inputs = {x, ints(pads)};
    if (mode == "constant") inputs.push_back(value);
    auto got = runOp("Pad", inputs, {Attribute::makeString("mode", mode)}, 1, 13, 1 + iter % 2);
    ASSERT_TRUE(got.isOk()) << mode << ": " << got.status().toString();
    EXPECT_TENSOR_EQ(want, (*got)[0]);
  }
  // Opset 18 axes input: pad only the last axis.
  const Tensor x = Tensor::fromVector<float>({2, 2}, {1, 2, 3, 4});
  auto got = runOp("Pad", {x, ints({1, 2}), std::nullopt, ints({-1})},
                   {Attribute::makeString("mode", "edge")});
  ASSERT_TRUE(got.isOk()) << got.status().toString();
  EXPECT_TENSOR_EQ(Tensor::fromVector<float>({2, 5}, {1, 1, 2, 2, 2, 3, 3, 4, 4, 4}), (*got)[0]);
}

TEST(ExecTensorTest, ConcatGatherSplitOnInt64) {
  const Tensor a = Tensor::fromVector<int64_t>({2, 2}, {1, 2, 3, 4});
  const Tensor b = Tensor::fromVector<int64_t>({2, 3}, {5, 6, 7, 8, 9, 10});
  auto cat = runOp("Concat", {a, b}, {Attribute::makeInt("axis", -1)});
  ASSERT_TRUE(cat.isOk()) << cat.status().toString();
  const Tensor want_cat = Tensor::fromVector<int64_t>({2, 5}, {1, 2, 5, 6, 7, 3, 4, 8, 9, 10});
  EXPECT_TENSOR_EQ(want_cat, (*cat)[0]);

  // Gather along axis 1 with negative and repeated indices, 2-D indices.
  const Tensor idx = Tensor::fromVector<int64_t>({2, 2}, {-1, 0, 2, 2});
  auto g = runOp("Gather", {want_cat, idx}, {Attribute::makeInt("axis", 1)});
  ASSERT_TRUE(g.isOk()) << g.status().toString();
  EXPECT_TENSOR_EQ(Tensor::fromVector<int64_t>({2, 2, 2}, {7, 1, 5, 5, 10, 3, 8, 8}), (*g)[0]);
  // int32 indices, scalar index drops the axis.
  auto g0 = runOp("Gather", {want_cat, Tensor::fromVector<int32_t>({}, {-1})}, {});
  ASSERT_TRUE(g0.isOk()) << g0.status().toString();
  EXPECT_TENSOR_EQ(Tensor::fromVector<int64_t>({5}, {3, 4, 8, 9, 10}), (*g0)[0]);
  EXPECT_FALSE(runOp("Gather", {want_cat, ints({5})}, {}).isOk());
  auto gl = runOp("Gather", {want_cat, ints({4, -5})}, {Attribute::makeInt("axis", -1)});
  ASSERT_TRUE(gl.isOk()) << gl.status().toString();
  EXPECT_TENSOR_EQ(Tensor::fromVector<int64_t>({2, 2}, {7, 1, 10, 3}), (*gl)[0]);

  // GatherElements.
  auto ge = runOp("GatherElements", {a, Tensor::fromVector<int64_t>({2, 2}, {1, -2, 0, 1})},
                  {Attribute::makeInt("axis", 1)});
  ASSERT_TRUE(ge.isOk()) << ge.status().toString();
  EXPECT_TENSOR_EQ(Tensor::fromVector<int64_t>({2, 2}, {2, 1, 3, 4}), (*ge)[0]);

  // Split: explicit sizes (input), and opset-18 num_outputs with an uneven last chunk.
  auto sp = runOp("Split", {want_cat, ints({3, 2})}, {Attribute::makeInt("axis", 1)}, 2);
  ASSERT_TRUE(sp.isOk()) << sp.status().toString();
  EXPECT_TENSOR_EQ(Tensor::fromVector<int64_t>({2, 3}, {1, 2, 5, 3, 4, 8}), (*sp)[0]);
  EXPECT_TENSOR_EQ(Tensor::fromVector<int64_t>({2, 2}, {6, 7, 9, 10}), (*sp)[1]);
  auto sp3 =
      runOp("Split", {ints({1, 2, 3, 4, 5, 6, 7})}, {Attribute::makeInt("num_outputs", 3)}, 3);
  ASSERT_TRUE(sp3.isOk()) << sp3.status().toString();
  EXPECT_TENSOR_EQ(ints({1, 2, 3}), (*sp3)[0]);
  EXPECT_TENSOR_EQ(ints({4, 5, 6}), (*sp3)[1]);
  EXPECT_TENSOR_EQ(ints({7}), (*sp3)[2]);
}

TEST(ExecTensorTest, ReshapeSqueezeUnsqueezeFlatten) {
  const Tensor x(DType::kInt64, {2, 3, 4});
  auto r = runOp("Reshape", {x, ints({0, -1})}, {});
  ASSERT_TRUE(r.isOk());
  EXPECT_EQ((*r)[0].shape(), (Shape{2, 12}));
  // allowzero: a literal 0 dim (only valid for an empty tensor).
  const Tensor empty(DType::kFloat32, {0, 3});
  auto rz = runOp("Reshape", {empty, ints({3, 0})}, {Attribute::makeInt("allowzero", 1)});
  ASSERT_TRUE(rz.isOk()) << rz.status().toString();
  EXPECT_EQ((*rz)[0].shape(), (Shape{3, 0}));
  EXPECT_FALSE(runOp("Reshape", {x, ints({5, -1})}, {}).isOk());
  auto u = runOp("Unsqueeze", {x, ints({-1, 0})}, {});
  ASSERT_TRUE(u.isOk());
  EXPECT_EQ((*u)[0].shape(), (Shape{1, 2, 3, 4, 1}));
  auto s = runOp("Squeeze", {(*u)[0]}, {});
  ASSERT_TRUE(s.isOk());
  EXPECT_EQ((*s)[0].shape(), (Shape{2, 3, 4}));
  auto f = runOp("Flatten", {x}, {Attribute::makeInt("axis", -1)});
  ASSERT_TRUE(f.isOk());
  EXPECT_EQ((*f)[0].shape(), (Shape{6, 4}));
  // String tensors carry through shape-only ops.
  const Tensor strs = Tensor::fromStrings({2, 1}, {"a", "b"});
  auto ss = runOp("Squeeze", {strs, ints({1})}, {});
  ASSERT_TRUE(ss.isOk());
  EXPECT_EQ((*ss)[0].strings(), (std::vector<std::string>{"a", "b"}));
}

TEST(ExecTensorTest, TileExpandDepthToSpaceMatchNaive) {
  std::mt19937 rng(4);
  for (DType dt : kMoveTypes) {
    const Shape shape = {2, 3, 4};
    const Tensor x = randomTensor(dt, shape, rng);
    const auto xs = stridesOf(shape);
    const std::vector<int64_t> reps = {2, 1, 3};
    const Tensor want_tile = reference(x, {4, 3, 12}, [&](const std::vector<int64_t>& o) {
      return (o[0] % 2) * xs[0] + o[1] * xs[1] + (o[2] % 4) * xs[2];
    });
    auto t = runOp("Tile", {x, ints(reps)}, {});
    ASSERT_TRUE(t.isOk()) << t.status().toString();
    EXPECT_TENSOR_EQ(want_tile, (*t)[0]);

    const Tensor col = randomTensor(dt, {3, 1}, rng);
    const Tensor want_expand =
        reference(col, {2, 3, 5}, [&](const std::vector<int64_t>& o) { return o[1]; });
    auto e = runOp("Expand", {col, ints({2, 1, 5})}, {});
    ASSERT_TRUE(e.isOk()) << e.status().toString();
    EXPECT_TENSOR_EQ(want_expand, (*e)[0]);

    // DepthToSpace (both modes) then SpaceToDepth (DCR inverse) round-trips.
    const Tensor img = randomTensor(dt, {2, 8, 3, 5}, rng);
    for (const char* mode : {"DCR", "CRD"}) {
      const int64_t bs = 2, co = 2;
      const Tensor want = reference(img, {2, co, 6, 10}, [&](const std::vector<int64_t>& o) {
        const int64_t bh = o[2] % bs, bw = o[3] % bs, h = o[2] / bs, w = o[3] / bs;
        const int64_t c =
            std::string(mode) == "DCR" ? (bh * bs + bw) * co + o[1] : (o[1] * bs + bh) * bs + bw;
        return ((o[0] * 8 + c) * 3 + h) * 5 + w;
      });
      auto d = runOp("DepthToSpace", {img},
                     {Attribute::makeInt("blocksize", 2), Attribute::makeString("mode", mode)});
      ASSERT_TRUE(d.isOk()) << d.status().toString();
      EXPECT_TENSOR_EQ(want, (*d)[0]);
      if (std::string(mode) == "DCR") {
        auto back = runOp("SpaceToDepth", {(*d)[0]}, {Attribute::makeInt("blocksize", 2)});
        ASSERT_TRUE(back.isOk()) << back.status().toString();
        EXPECT_TENSOR_EQ(img, (*back)[0]);
      }
    }
  }
}

// Naive pooling over [N, C, H, W] with explicit pads.
struct PoolCase {
  int64_t kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
  bool ceil;
};

TEST(ExecTensorTest, MaxAndAveragePoolMatchNaive) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-5.f, 5.f);
  const PoolCase cases[] = {
      {3, 3, 2, 2, 1, 1, 1, 1, 1, 1, false}, {3, 3, 2, 2, 1, 1, 0, 0, 0, 0, true},
      {2, 3, 1, 2, 2, 1, 1, 0, 0, 2, true},  {5, 1, 3, 1, 1, 1, 2, 0, 2, 0, false},
      {2, 2, 2, 2, 1, 1, 0, 0, 1, 1, true},
  };
  const int64_t n = 2, c = 3, h = 11, w = 9;
  Tensor x(DType::kFloat32, {n, c, h, w});
  for (float& v : x.mutableData<float>()) v = u(rng);
  const float* xd = x.data<float>().data();
  for (const PoolCase& pc : cases) {
    auto outSize = [&](int64_t in, int64_t k, int64_t s, int64_t d, int64_t p0, int64_t p1) {
      const int64_t span = in + p0 + p1 - ((k - 1) * d + 1);
      int64_t o = (pc.ceil ? (span + s - 1) / s : span / s) + 1;
      if (pc.ceil && (o - 1) * s >= in + p0) --o;
      return o;
    };
    const int64_t oh = outSize(h, pc.kh, pc.sh, pc.dh, pc.pt, pc.pb);
    const int64_t ow = outSize(w, pc.kw, pc.sw, pc.dw, pc.pl, pc.pr);
    std::vector<float> want_max, want_avg, want_avg_pad;
    std::vector<int64_t> want_idx;
    for (int64_t p = 0; p < n * c; ++p)
      for (int64_t y = 0; y < oh; ++y)
        for (int64_t z = 0; z < ow; ++z) {
          float best = -INFINITY, sum = 0;
          int64_t best_i = -1, count = 0, count_pad = 0;
          for (int64_t i = 0; i < pc.kh; ++i)
            for (int64_t j = 0; j < pc.kw; ++j) {
              const int64_t yy = y * pc.sh - pc.pt + i * pc.dh, zz = z * pc.sw - pc.pl + j * pc.dw;
              if (yy >= -pc.pt && yy < h + pc.pb && zz >= -pc.pl && zz < w + pc.pr) ++count_pad;
              if (yy < 0 || yy >= h || zz < 0 || zz >= w) continue;
              const float v = xd[p * h * w + yy * w + zz];
              if (v > best) best = v, best_i = p * h * w + yy * w + zz;
              sum += v;
              ++count;
            }
          want_max.push_back(best);
          want_idx.push_back(best_i);
          want_avg.push_back(sum / count);
          want_avg_pad.push_back(sum / count_pad);
        }
    std::vector<Attribute> attrs = {Attribute::makeInts("kernel_shape", {pc.kh, pc.kw}),
                                    Attribute::makeInts("strides", {pc.sh, pc.sw}),
                                    Attribute::makeInts("pads", {pc.pt, pc.pl, pc.pb, pc.pr}),
                                    Attribute::makeInt("ceil_mode", pc.ceil)};
    std::vector<Attribute> max_attrs = attrs;
    max_attrs.push_back(Attribute::makeInts("dilations", {pc.dh, pc.dw}));
    for (int threads : {1, 2}) {
      auto mp = runOp("MaxPool", {x}, max_attrs, 2, 12, threads);
      ASSERT_TRUE(mp.isOk()) << mp.status().toString();
      EXPECT_EQ((*mp)[0].shape(), (Shape{n, c, oh, ow}));
      EXPECT_TENSOR_EQ(Tensor::fromVector<float>({n, c, oh, ow}, want_max), (*mp)[0]);
      EXPECT_TENSOR_EQ(Tensor::fromVector<int64_t>({n, c, oh, ow}, want_idx), (*mp)[1]);
      if (pc.dh != 1 || pc.dw != 1) continue;  // AveragePool dilations are opset 19
      for (int include : {0, 1}) {
        std::vector<Attribute> avg_attrs = attrs;
        avg_attrs.push_back(Attribute::makeInt("count_include_pad", include));
        auto ap = runOp("AveragePool", {x}, avg_attrs, 1, 11, threads);
        ASSERT_TRUE(ap.isOk()) << ap.status().toString();
        const auto& want = include ? want_avg_pad : want_avg;
        const auto got = (*ap)[0].data<float>();
        ASSERT_EQ(got.size(), want.size());
        for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-5) << i;
      }
    }
  }
  // Global pools keep the rank.
  auto gap = runOp("GlobalAveragePool", {x}, {});
  ASSERT_TRUE(gap.isOk());
  EXPECT_EQ((*gap)[0].shape(), (Shape{n, c, 1, 1}));
  double s = 0;
  for (int64_t i = 0; i < h * w; ++i) s += xd[i];
  EXPECT_NEAR((*gap)[0].data<float>()[0], s / (h * w), 1e-5);
  // LpPool (1-D): p = 2 and p = 1 norms of each window.
  const Tensor l = Tensor::fromVector<float>({1, 1, 4}, {3, -4, 0, 5});
  auto lp2 = runOp("LpPool", {l}, {Attribute::makeInts("kernel_shape", {2})});
  ASSERT_TRUE(lp2.isOk()) << lp2.status().toString();
  EXPECT_TENSOR_EQ(Tensor::fromVector<float>({1, 1, 3}, {5, 4, 5}), (*lp2)[0]);
  auto lp1 =
      runOp("LpPool", {l}, {Attribute::makeInts("kernel_shape", {2}), Attribute::makeInt("p", 1)});
  ASSERT_TRUE(lp1.isOk()) << lp1.status().toString();
  EXPECT_TENSOR_EQ(Tensor::fromVector<float>({1, 1, 3}, {7, 4, 5}), (*lp1)[0]);
  // uint8 max pool works; uint8 average pool is reported as unsupported.
  const Tensor q = Tensor::fromVector<uint8_t>({1, 1, 2, 2}, {3, 200, 7, 9});
  auto qm = runOp("MaxPool", {q}, {Attribute::makeInts("kernel_shape", {2, 2})});
  ASSERT_TRUE(qm.isOk());
  EXPECT_EQ((*qm)[0].data<uint8_t>()[0], 200);
  auto qa = runOp("AveragePool", {q}, {Attribute::makeInts("kernel_shape", {2, 2})});
  ASSERT_FALSE(qa.isOk());
  EXPECT_EQ(qa.status().code(), StatusCode::kUnsupported);
}

TEST(ExecTensorTest, SmallOps) {
  const Tensor x(DType::kFloat32, {2, 3, 4});
  auto sh = runOp("Shape", {x}, {Attribute::makeInt("start", -2)}, 1, 15);
  ASSERT_TRUE(sh.isOk());
  EXPECT_TENSOR_EQ(ints({3, 4}), (*sh)[0]);
  auto sz = runOp("Size", {x}, {});
  ASSERT_TRUE(sz.isOk());
  EXPECT_EQ((*sz)[0].data<int64_t>()[0], 24);
  auto dr = runOp("Dropout", {x}, {}, 2, 13);
  ASSERT_TRUE(dr.isOk());
  EXPECT_EQ((*dr)[1].dtype(), DType::kBool);
  EXPECT_EQ((*dr)[1].data<bool>()[5], true);
  auto rg = runOp("Range",
                  {Tensor::fromVector<int32_t>({}, {10}), Tensor::fromVector<int32_t>({}, {1}),
                   Tensor::fromVector<int32_t>({}, {-3})},
                  {});
  ASSERT_TRUE(rg.isOk());
  EXPECT_TENSOR_EQ(Tensor::fromVector<int32_t>({3}, {10, 7, 4}), (*rg)[0]);
  auto tr = runOp("Trilu", {Tensor::fromVector<int64_t>({2, 3}, {1, 2, 3, 4, 5, 6}), ints({1})},
                  {Attribute::makeInt("upper", 0)});
  ASSERT_TRUE(tr.isOk());
  EXPECT_TENSOR_EQ(Tensor::fromVector<int64_t>({2, 3}, {1, 2, 0, 4, 5, 6}), (*tr)[0]);
  auto cs = runOp("ConstantOfShape", {ints({2, 2})},
                  {Attribute::makeTensor("value", Tensor::fromVector<int64_t>({1}, {7}))});
  ASSERT_TRUE(cs.isOk());
  EXPECT_TENSOR_EQ(Tensor::fromVector<int64_t>({2, 2}, {7, 7, 7, 7}), (*cs)[0]);
}

// ScatterND against the two examples of the ONNX spec (opset 11/13/16/18 text), plus negative
// indices, the reductions (add/mul from 16, max/min from 18) against a direct loop, and the
// errors: an index out of range, updates of the wrong shape, a reduction its opset lacks.
TEST(ExecTensorTest, ScatterNDMatchesTheSpecExamples) {
  {
    const Tensor data = Tensor::fromVector<float>({8}, {1, 2, 3, 4, 5, 6, 7, 8});
    const Tensor idx = Tensor::fromVector<int64_t>({4, 1}, {4, 3, 1, 7});
    const Tensor upd = Tensor::fromVector<float>({4}, {9, 10, 11, 12});
    auto got = runOp("ScatterND", {data, idx, upd}, {}, 1, 11);
    ASSERT_TRUE(got.isOk()) << got.status().toString();
    const auto v = (*got)[0].data<float>();
    EXPECT_EQ(std::vector<float>(v.begin(), v.end()),
              (std::vector<float>{1, 11, 3, 10, 9, 6, 7, 12}));
  }
  const std::vector<float> a = {1, 2, 3, 4, 5, 6, 7, 8, 8, 7, 6, 5, 4, 3, 2, 1};
  const std::vector<float> b = {8, 7, 6, 5, 4, 3, 2, 1, 1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<float> data_v;
  for (const auto* part : {&a, &a, &b, &b}) data_v.insert(data_v.end(), part->begin(), part->end());
  std::vector<float> upd_v;
  for (float f : {5.f, 6.f, 7.f, 8.f, 1.f, 2.f, 3.f, 4.f})
    for (int i = 0; i < 4; ++i) upd_v.push_back(f);
  const Tensor data = Tensor::fromVector<float>({4, 4, 4}, data_v);
  const Tensor upd = Tensor::fromVector<float>({2, 4, 4}, upd_v);
  std::vector<float> want;
  want.insert(want.end(), upd_v.begin(), upd_v.begin() + 16);
  want.insert(want.end(), a.begin(), a.end());
  want.insert(want.end(), upd_v.begin() + 16, upd_v.end());
  want.insert(want.end(), b.begin(), b.end());
  // Index 2 also spelled -2: negative entries count from the back.
  for (int64_t second : {int64_t{2}, int64_t{-2}}) {
    auto got = runOp("ScatterND", {data, Tensor::fromVector<int64_t>({2, 1}, {0, second}), upd}, {},
                     1, 13);
    ASSERT_TRUE(got.isOk()) << got.status().toString();
    const auto v = (*got)[0].data<float>();
    EXPECT_EQ(std::vector<float>(v.begin(), v.end()), want) << "second index " << second;
  }
}

TEST(ExecTensorTest, ScatterNDReductionsAndErrors) {
  std::mt19937 rng(5);
  const Tensor data = randomTensor(DType::kFloat32, {3, 4, 2}, rng);
  // Element tuples (k = 2 of rank 3): slices of 2; (1, 2) appears twice.
  const Tensor idx = Tensor::fromVector<int64_t>({3, 2}, {1, 2, 0, -1, 1, 2});
  const Tensor upd = randomTensor(DType::kFloat32, {3, 2}, rng);
  const std::vector<std::pair<std::string, int64_t>> cases = {
      {"add", 16}, {"mul", 16}, {"max", 18}, {"min", 18}};
  for (const auto& [name, opset] : cases) {
    SCOPED_TRACE(name);
    std::vector<float> want(data.data<float>().begin(), data.data<float>().end());
    const auto ix = idx.data<int64_t>();
    for (int t = 0; t < 3; ++t) {
      const int64_t i0 = ix[2 * t], i1 = ix[2 * t + 1] < 0 ? ix[2 * t + 1] + 4 : ix[2 * t + 1];
      for (int j = 0; j < 2; ++j) {
        float& w = want[(i0 * 4 + i1) * 2 + j];
        const float u = upd.data<float>()[t * 2 + j];
        w = name == "add"   ? w + u
            : name == "mul" ? w * u
            : name == "max" ? std::max(w, u)
                            : std::min(w, u);
      }
    }
    auto got =
        runOp("ScatterND", {data, idx, upd}, {Attribute::makeString("reduction", name)}, 1, opset);
    ASSERT_TRUE(got.isOk()) << got.status().toString();
    const auto v = (*got)[0].data<float>();
    EXPECT_EQ(std::vector<float>(v.begin(), v.end()), want);
    // One opset earlier the reduction does not exist.
    EXPECT_FALSE(runOp("ScatterND", {data, idx, upd}, {Attribute::makeString("reduction", name)}, 1,
                       opset - 1)
                     .isOk());
  }
  EXPECT_FALSE(
      runOp("ScatterND",
            {data, Tensor::fromVector<int64_t>({1, 2}, {3, 0}), Tensor(DType::kFloat32, {1, 2})},
            {}, 1, 13)
          .isOk());
  EXPECT_FALSE(runOp("ScatterND", {data, idx, Tensor(DType::kFloat32, {3, 3})}, {}, 1, 13).isOk());
}

}  // namespace
}  // namespace nnc

namespace nnc {
namespace {

// Executor::runValues: named intermediates and outputs, in the order asked; an unknown name is
// an error, not an empty tensor.
TEST(ExecutorRunValues, ReturnsNamedValuesInTheOrderAsked) {
  Model m;
  m.opset_imports = {{"", 13}};
  Graph& g = *m.graph;
  Value* x = testing::addFloatInput(g);
  Value* a = g.addNode("Relu", {x}, {"a"})->output(0);
  Value* y = g.addNode("Neg", {a}, {"y"})->output(0);
  g.addOutput(y);
  auto ex = exec::Executor::create(m);
  ASSERT_TRUE(ex.isOk()) << ex.status().toString();
  const Tensor in = Tensor::fromVector<float>({4}, {-1.f, 2.f, -3.f, 4.f});
  auto got = (*ex)->runValues({in}, {"y", "a"});
  ASSERT_TRUE(got.isOk()) << got.status().toString();
  auto values = [](const Tensor& t) {
    auto d = t.data<float>();
    return std::vector<float>(d.begin(), d.end());
  };
  EXPECT_EQ(values((*got)[0]), (std::vector<float>{-0.f, -2.f, -0.f, -4.f}));
  EXPECT_EQ(values((*got)[1]), (std::vector<float>{0.f, 2.f, 0.f, 4.f}));
  auto missing = (*ex)->runValues({in}, {"a", "nope"});
  ASSERT_FALSE(missing.isOk());
  EXPECT_NE(missing.status().message().find("'nope'"), std::string::npos);
}

}  // namespace
}  // namespace nnc
