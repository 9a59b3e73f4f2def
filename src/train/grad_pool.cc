// Pooling backward (1-D and 2-D; the exec kernel's tap arithmetic):
//   MaxPool: dX at the window's arg-max (first maximum) += dY
//   AveragePool: dX at every tap of the window += dY / count (count_include_pad as in forward)
//   GlobalAveragePool: dX = dY / (H * W), broadcast

#include <algorithm>
#include <vector>

#include "backward.h"
#include "kernel_util.h"

namespace nnc::train {
namespace {

int64_t at(const std::vector<int64_t>& v, size_t i, int64_t fallback) {
  return i < v.size() ? v[i] : fallback;
}

// One spatial axis: first tap per output, taps inside the input, taps inside input + pads.
struct Axis {
  int64_t in = 1, out = 1, k = 1, s = 1, d = 1, pb = 0, pe = 0;
  std::vector<int64_t> first, count, padded_count;

  void taps() {
    for (int64_t o = 0; o < out; ++o) {
      const int64_t start = o * s - pb;
      const int64_t lo = start < 0 ? (-start + d - 1) / d : 0;
      const int64_t hi = in - start <= 0 ? 0 : std::min(k, (in - start + d - 1) / d);
      const int64_t phi = std::min(k, (in + pe - start + d - 1) / d);
      first.push_back(start + lo * d);
      count.push_back(std::max<int64_t>(0, hi - lo));
      padded_count.push_back(std::max<int64_t>(0, phi));
    }
  }
};

// Axes 0 (height; 1 for 1-D) and 1 (width) of a pool node given input and output shapes.
std::vector<Axis> poolAxes(const Node& node, const Shape& x, const Shape& y) {
  const bool one_d = x.size() == 3;
  const size_t rank = one_d ? 1 : 2;
  const auto ks = node.intsAttr("kernel_shape"), st = node.intsAttr("strides"),
             dl = node.intsAttr("dilations"), pads = node.intsAttr("pads");
  const std::string auto_pad = node.stringAttr("auto_pad", "NOTSET");
  std::vector<Axis> axes(2);
  for (size_t a = 0; a < rank; ++a) {
    Axis& ax = axes[one_d ? 1 : a];
    ax.in = x[2 + a], ax.out = y[2 + a];
    ax.k = at(ks, a, 1), ax.s = at(st, a, 1), ax.d = at(dl, a, 1);
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      const int64_t total =
          std::max<int64_t>(0, (ax.out - 1) * ax.s + (ax.k - 1) * ax.d + 1 - ax.in);
      ax.pb = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      ax.pe = total - ax.pb;
    } else if (auto_pad != "VALID") {
      ax.pb = at(pads, a, 0), ax.pe = at(pads, a + rank, 0);
    }
  }
  for (Axis& ax : axes) ax.taps();
  return axes;
}

std::string poolCheck(const Node& n, int64_t) {
  const size_t rank = n.intsAttr("kernel_shape").size();
  if (rank < 1 || rank > 2) return "only 1-D and 2-D pooling have a backward";
  if (n.outputs().size() > 1 && n.output(1) && n.output(1)->hasUses()) return "Indices output read";
  return "";
}

template <bool kMax>
Status poolBackward(const BackwardContext& c, std::span<Tensor> grads) {
  const Shape& xs = c.input_shapes[0];
  const Tensor& dy = *c.output_grads[0];
  if (xs.size() < 3 || xs.size() > 4) return unsupported("pool rank");
  const std::vector<Axis> ax = poolAxes(c.node, xs, dy.shape());
  const bool include_pad = c.node.intAttr("count_include_pad", 0) != 0;
  const int64_t planes = xs[0] * xs[1], in_plane = ax[0].in * ax[1].in,
                out_plane = ax[0].out * ax[1].out;
  if (kMax && !c.inputs[0]) return internalError("MaxPool input not kept");
  const float* x = kMax ? fdata(*c.inputs[0]) : nullptr;
  const float* g = fdata(dy);
  Tensor dx = zeros(xs, &c.ctx);
  float* d = fdata(dx);
  exec::parallelFor(planes, c.ctx, out_plane * ax[0].k * ax[1].k, [&](int64_t p) {
    const float* gp = g + p * out_plane;
    float* dp = d + p * in_plane;
    const float* xp = kMax ? x + p * in_plane : nullptr;
    for (int64_t oy = 0; oy < ax[0].out; ++oy)
      for (int64_t ox = 0; ox < ax[1].out; ++ox) {
        const float gv = gp[oy * ax[1].out + ox];
        const int64_t y0 = ax[0].first[oy], ny = ax[0].count[oy];
        const int64_t x0 = ax[1].first[ox], nx = ax[1].count[ox];
        if (kMax) {
          if (ny <= 0 || nx <= 0) continue;
          // Branch-free arg-max (first maximum): the comparisons are data-dependent coin flips.
          int64_t best = y0 * ax[1].in + x0;
          float m = xp[best];
          for (int64_t i = 0; i < ny; ++i)
            for (int64_t j = 0; j < nx; ++j) {
              const int64_t at = (y0 + i * ax[0].d) * ax[1].in + x0 + j * ax[1].d;
              const float v = xp[at];
              const int64_t mask = -static_cast<int64_t>(v > m);  // all ones when better
              best = (at & mask) | (best & ~mask);
              m = std::max(v, m);
            }
          dp[best] += gv;
        } else {
          const int64_t count =
              include_pad ? ax[0].padded_count[oy] * ax[1].padded_count[ox] : ny * nx;
          if (count <= 0) continue;
          const float share = gv / static_cast<float>(count);
          for (int64_t i = 0; i < ny; ++i)
            for (int64_t j = 0; j < nx; ++j)
              dp[(y0 + i * ax[0].d) * ax[1].in + x0 + j * ax[1].d] += share;
        }
      }
  });
  grads[0] = std::move(dx);
  return Status::ok();
}

Status globalAveragePoolBackward(const BackwardContext& c, std::span<Tensor> grads) {
  const Shape& xs = c.input_shapes[0];
  const int64_t planes = xs[0] * xs[1], inner = shapeNumel(xs) / std::max<int64_t>(1, planes);
  const float* g = fdata(*c.output_grads[0]);
  Tensor dx = c.ctx.newTensor(DType::kFloat32, xs);
  float* d = fdata(dx);
  exec::parallelFor(planes, c.ctx, inner, [&](int64_t p) {
    std::fill_n(d + p * inner, inner, g[p] / static_cast<float>(inner));
  });
  grads[0] = std::move(dx);
  return Status::ok();
}

}  // namespace

void registerPoolBackward(BackwardRegistry& r) {
  r.add("MaxPool", {poolBackward<true>, 1, 0, poolCheck});
  r.add("AveragePool", {poolBackward<false>, 0, 0, poolCheck});
  r.add("GlobalAveragePool", {globalAveragePoolBackward, 0, 0});
}

}  // namespace nnc::train
