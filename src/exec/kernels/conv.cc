// Conv and ConvTranspose (1-D and 2-D). Conv runs the direct kernels of direct_conv.h (packed
// weights, vectorised over output channels; depthwise vectorised along rows); the im2col + Eigen
// GEMM path per (sample, group) below remains for what they do not take (negative pads, depthwise
// with unequal strides) and for NNC_CONV=im2col. ConvTranspose is col2im around a GEMM.
//   Conv:          Y[n, g*Mg + m, p] = sum_k W[g*Mg + m, k] * col_{n,g}[k, p] + B[m]
//   ConvTranspose: col_{n,g} = W_g^T X_{n,g}, then scatter-add col into Y (col2im)

#include <Eigen/Core>
#include <algorithm>
#include <cstdlib>
#include <string>

#include "direct_conv.h"
#include "gemm.h"
#include "kernel_util.h"
#include "kernels.h"
#include "nncompress/ir/conv_geometry.h"

namespace nnc::exec {
namespace {

using MatrixRM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapRM = Eigen::Map<MatrixRM>;
using ConstMapRM = Eigen::Map<const MatrixRM>;

// 2-D geometry; 1-D convolutions are 2-D with height 1.
struct ConvGeometry {
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
};

using ConvAttrs = ConvWindow;

// Kernel, strides and dilations as 2-D geometry (padding is computed per op).
ConvGeometry kernelGeometry(const ConvWindow& a, bool one_d, int64_t kh, int64_t kw) {
  const size_t last = one_d ? 0 : 1;
  ConvGeometry g;
  g.kh = kh;
  g.kw = kw;
  g.sh = one_d ? 1 : a.stride(0);
  g.sw = a.stride(last);
  g.dh = one_d ? 1 : a.dilation(0);
  g.dw = a.dilation(last);
  return g;
}

// Spatial dims (1 or 2) of an input and kernel, padded to 2 with a leading 1.
Status spatialDims(const Shape& x, const Shape& w, int64_t& ih, int64_t& iw, int64_t& kh,
                   int64_t& kw) {
  if (x.size() != w.size() || x.size() < 3 || x.size() > 4)
    return unsupported("only 1-D and 2-D convolutions are supported (input " + shapeToString(x) +
                       ", weight " + shapeToString(w) + ")");
  const bool one_d = x.size() == 3;
  ih = one_d ? 1 : x[2];
  iw = x.back();
  kh = one_d ? 1 : w[2];
  kw = w.back();
  return Status::ok();
}

// col[(c*kh + i)*kw + j, oh*ow_size + ow] = x[c, oh*sh - pt + i*dh, ow*sw - pl + j*dw] (0 outside).
void im2col(const float* x, int64_t channels, int64_t ih, int64_t iw, const ConvGeometry& g,
            int64_t oh, int64_t ow, float* col, const RunContext& ctx) {
  const int64_t rows = channels * g.kh * g.kw;
  parallelFor(rows, ctx, oh * ow, [&](int64_t r) {
    const int64_t c = r / (g.kh * g.kw), i = (r / g.kw) % g.kh, j = r % g.kw;
    const float* xc = x + c * ih * iw;
    float* dst = col + r * oh * ow;
    for (int64_t y = 0; y < oh; ++y) {
      const int64_t sy = y * g.sh - g.pad_top + i * g.dh;
      float* row = dst + y * ow;
      if (sy < 0 || sy >= ih) {
        std::fill(row, row + ow, 0.f);
        continue;
      }
      const float* src = xc + sy * iw;
      const int64_t off = j * g.dw - g.pad_left;
      if (g.sw == 1) {
        // Contiguous: copy the in-range span, zero the edges.
        const int64_t lo = std::clamp<int64_t>(-off, 0, ow),
                      hi = std::clamp<int64_t>(iw - off, 0, ow);
        std::fill(row, row + lo, 0.f);
        if (hi > lo) std::copy(src + lo + off, src + hi + off, row + lo);
        std::fill(row + std::max(lo, hi), row + ow, 0.f);
      } else {
        for (int64_t xo = 0; xo < ow; ++xo) {
          const int64_t sx = xo * g.sw + off;
          row[xo] = (sx >= 0 && sx < iw) ? src[sx] : 0.f;
        }
      }
    }
  });
}

// The direct kernel (direct_conv.h) unless NNC_CONV=im2col asks for im2col + GEMM everywhere
// (for benchmarks and tests).
bool directConvEnabled() {
  static const bool enabled = [] {
    const char* env = std::getenv("NNC_CONV");
    return !env || std::string(env) != "im2col";
  }();
  return enabled;
}

class ConvKernel : public Kernel {
 public:
  // An unfused Conv; constant W and B are remembered so their packing is done once.
  ConvKernel(ConvAttrs attrs, const Tensor* constant_w, const Tensor* constant_b)
      : attrs_(std::move(attrs)), constant_w_(constant_w), constant_b_(constant_b) {}
  // A fused Conv: weights and bias given (BatchNormalization folded in at plan time), an
  // activation applied in the GEMM epilogue; the kernel then takes only X.
  ConvKernel(ConvAttrs attrs, Tensor weight, std::vector<float> bias, Epilogue act)
      : attrs_(std::move(attrs)),
        fused_(true),
        fused_w_(std::move(weight)),
        fused_b_(std::move(bias)),
        act_(act) {}

  // Every 2-D (or 1-D) convolution goes to the direct kernels.
  static bool useDirect(const ConvGeometry& g) {
    return directConvEnabled() && g.pad_top >= 0 && g.pad_left >= 0 && g.pad_bottom >= 0 &&
           g.pad_right >= 0;
  }

  // The packed weights for this run: made once for constant (or fused) weights, else per run.
  const PackedConvWeights& packed(const Tensor& w, const Tensor* b, int64_t m, int64_t groups,
                                  int64_t k) {
    const bool cacheable = fused_ || (&w == constant_w_ && b == constant_b_);
    if (cacheable && packed_cacheable_) return packed_;
    const float* bias = fused_ ? (fused_b_.empty() ? nullptr : fused_b_.data())
                               : (b ? b->data<float>().data() : nullptr);
    packed_ = packConvWeights(w.data<float>().data(), bias, m, groups, k);
    packed_.half_tail = true;  // a tail block of <= half a vector (24 = 16 + 8) at half width
    packed_cacheable_ = cacheable;
    return packed_;
  }

  Status run(std::span<const Tensor* const> in, std::span<Tensor> out,
             const RunContext& ctx) override {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "X"));
    if (!fused_) NNC_RETURN_IF_ERROR(requireInput(in, 1, "W"));
    const Tensor& x = *in[0];
    const Tensor& w = fused_ ? fused_w_ : *in[1];
    const Tensor* b = !fused_ && in.size() > 2 ? in[2] : nullptr;
    NNC_RETURN_IF_ERROR(requireDType(x, DType::kFloat32, "Conv input"));
    NNC_RETURN_IF_ERROR(requireDType(w, DType::kFloat32, "Conv weight"));
    int64_t ih, iw, kh, kw;
    NNC_RETURN_IF_ERROR(spatialDims(x.shape(), w.shape(), ih, iw, kh, kw));
    const int64_t n = x.dim(0), c = x.dim(1), m = w.dim(0), groups = attrs_.group;
    if (groups <= 0 || c % groups || m % groups || w.dim(1) != c / groups)
      return shapeMismatch("Conv weight " + shapeToString(w.shape()) + " does not fit input " +
                           shapeToString(x.shape()) + " with group " + std::to_string(groups));
    const bool one_d = x.rank() == 3;
    const int64_t rank = one_d ? 1 : 2;
    ConvGeometry g = kernelGeometry(attrs_, one_d, kh, kw);
    int64_t oh = 1, ow;
    if (!one_d) {
      NNC_ASSIGN_OR_RETURN(oh, convAxisPads(attrs_, 0, ih, kh, rank, g.pad_top, g.pad_bottom));
    }
    NNC_ASSIGN_OR_RETURN(ow, convAxisPads(attrs_, rank - 1, iw, kw, rank, g.pad_left, g.pad_right));
    if (b && (b->numel() != m || b->dtype() != DType::kFloat32))
      return shapeMismatch("Conv bias must be float32[" + std::to_string(m) + "]");

    Shape out_shape = one_d ? Shape{n, m, ow} : Shape{n, m, oh, ow};
    Tensor y = ctx.newTensor(DType::kFloat32, out_shape);  // every element is written below
    const int64_t cg = c / groups, mg = m / groups, p = oh * ow, k = cg * kh * kw;
    const float* xd = x.data<float>().data();
    const float* wd = w.data<float>().data();
    float* yd = y.mutableData<float>().data();
    Epilogue epi = act_;
    epi.row_bias = fused_ ? (fused_b_.empty() ? nullptr : fused_b_.data())
                          : (b ? b->data<float>().data() : nullptr);
    const bool depthwise = groups > 1 && groups == c && cg == 1;
    DirectConvShape ds;
    ds.n = n, ds.c = c, ds.ih = ih, ds.iw = iw;
    ds.kh = kh, ds.kw = kw, ds.sh = g.sh, ds.sw = g.sw, ds.dh = g.dh, ds.dw = g.dw;
    ds.pad_top = g.pad_top, ds.pad_left = g.pad_left, ds.pad_bottom = g.pad_bottom;
    ds.pad_right = g.pad_right, ds.oh = oh, ds.ow = ow;
    if (!depthwise && useDirect(g)) {
      const PackedConvWeights& pw = packed(w, b, m, groups, k);
      directConv(xd, ds, pw, act_, yd, ctx);
    } else if (depthwise && useDirect(g) && g.sh == g.sw) {
      directDepthwiseConv(xd, ds, wd, epi.row_bias, m, act_, yd, ctx);
    } else if (depthwise) {
      depthwiseConv(xd, wd, yd, n, c, mg, ih, iw, oh, ow, g, epi, ctx);
    } else {
      const bool pointwise = kh == 1 && kw == 1 && g.sh == 1 && g.sw == 1 && g.pad_top == 0 &&
                             g.pad_left == 0 && g.pad_bottom == 0 && g.pad_right == 0;
      const int64_t items = n * groups;
      const int threads = ctx.num_threads;
      // Worth a parallel region only when the GEMM is big enough to pay for the fork/join.
      const bool big = mg * k * p >= (int64_t{1} << 21);
      // Many GEMMs: one (im2col + GEMM) per thread. Otherwise each GEMM is split by columns.
      const bool per_item_threads = threads > 1 && items >= threads && big;
      auto work = [&](int64_t item, bool split_columns) {
        const int64_t s = item / groups, gi = item % groups;
        const float* xs = xd + (s * c + gi * cg) * ih * iw;
        // One im2col buffer per thread, reused across items, layers and batches: a fresh
        // allocation per item costs more than the copy itself on small images.
        thread_local std::vector<float> col;
        const float* colp = xs;
        if (!pointwise) {
          if (col.size() < static_cast<size_t>(k * p)) col.resize(static_cast<size_t>(k * p));
          RunContext inner = ctx;
          if (!split_columns) inner.num_threads = 1;
          im2col(xs, cg, ih, iw, g, oh, ow, col.data(), inner);
          colp = col.data();
        }
        Epilogue e = epi;
        if (e.row_bias) e.row_bias += gi * mg;
        float* ys = yd + (s * m + gi * mg) * p;
        const float* wg = wd + gi * mg * k;
        auto gemmColumns = [&](int64_t j0, int64_t j1) {
          GemmArgs a;
          a.m = mg, a.n = j1 - j0, a.k = k;
          a.a = wg, a.lda = k;
          a.b = colp + j0, a.ldb = p;
          a.c = ys + j0, a.ldc = p;
          a.threads = 1;
          sgemm(a, e);
        };
        if (split_columns) {
          // Column blocks of whole cache lines, one per thread.
          const int64_t chunk = ((p + threads - 1) / threads + 15) / 16 * 16;
          parallelRun(threads, ctx, [&](int64_t t) {
            const int64_t j0 = std::min<int64_t>(p, t * chunk),
                          j1 = std::min<int64_t>(p, j0 + chunk);
            if (j1 > j0) gemmColumns(j0, j1);
          });
        } else {
          gemmColumns(0, p);
        }
      };
      if (per_item_threads) {
        parallelRun(items, ctx, [&](int64_t item) { work(item, false); });
      } else {
        const bool split = threads > 1 && big && p >= 32 * threads;
        for (int64_t item = 0; item < items; ++item) work(item, split);
      }
    }
    out[0] = std::move(y);
    return Status::ok();
  }

 private:
  // One filter (or `mult` filters) per input channel: a direct loop beats im2col here.
  static void depthwiseConv(const float* x, const float* w, float* y, int64_t n, int64_t c,
                            int64_t mult, int64_t ih, int64_t iw, int64_t oh, int64_t ow,
                            const ConvGeometry& g, const Epilogue& epi, const RunContext& ctx) {
    const int64_t m = c * mult;
    parallelFor(n * m, ctx, oh * ow * g.kh * g.kw, [&](int64_t item) {
      const int64_t s = item / m, oc = item % m, ic = oc / mult;
      const float* xc = x + (s * c + ic) * ih * iw;
      const float* wk = w + oc * g.kh * g.kw;
      float* yc = y + item * oh * ow;
      // Interior outputs (every tap in range) skip the bounds checks.
      for (int64_t yo = 0; yo < oh; ++yo) {
        const int64_t sy0 = yo * g.sh - g.pad_top;
        const bool rows_in = sy0 >= 0 && sy0 + (g.kh - 1) * g.dh < ih;
        for (int64_t xo = 0; xo < ow; ++xo) {
          const int64_t sx0 = xo * g.sw - g.pad_left;
          float acc = 0.f;
          if (rows_in && sx0 >= 0 && sx0 + (g.kw - 1) * g.dw < iw) {
            for (int64_t i = 0; i < g.kh; ++i) {
              const float* row = xc + (sy0 + i * g.dh) * iw + sx0;
              for (int64_t j = 0; j < g.kw; ++j) acc += row[j * g.dw] * wk[i * g.kw + j];
            }
          } else {
            for (int64_t i = 0; i < g.kh; ++i) {
              const int64_t sy = sy0 + i * g.dh;
              if (sy < 0 || sy >= ih) continue;
              const float* row = xc + sy * iw;
              for (int64_t j = 0; j < g.kw; ++j) {
                const int64_t sx = sx0 + j * g.dw;
                if (sx >= 0 && sx < iw) acc += row[sx] * wk[i * g.kw + j];
              }
            }
          }
          yc[yo * ow + xo] = acc;
        }
      }
      Epilogue e = epi;
      if (e.row_bias) e.row_bias += oc;
      if (e.row_bias || e.act != Epilogue::kNone) applyEpilogue(yc, 1, oh * ow, oh * ow, e);
    });
  }

  ConvAttrs attrs_;
  bool fused_ = false;
  Tensor fused_w_;
  std::vector<float> fused_b_;
  Epilogue act_;
  const Tensor* constant_w_ = nullptr;  // the node's W / B when they are initializers
  const Tensor* constant_b_ = nullptr;
  PackedConvWeights packed_;
  bool packed_cacheable_ = false;
};

class ConvTransposeKernel : public Kernel {
 public:
  explicit ConvTransposeKernel(ConvAttrs attrs) : attrs_(std::move(attrs)) {}

  Status run(std::span<const Tensor* const> in, std::span<Tensor> out,
             const RunContext& ctx) override {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "X"));
    NNC_RETURN_IF_ERROR(requireInput(in, 1, "W"));
    const Tensor& x = *in[0];
    const Tensor& w = *in[1];
    const Tensor* b = in.size() > 2 ? in[2] : nullptr;
    NNC_RETURN_IF_ERROR(requireDType(x, DType::kFloat32, "ConvTranspose input"));
    NNC_RETURN_IF_ERROR(requireDType(w, DType::kFloat32, "ConvTranspose weight"));
    int64_t ih, iw, kh, kw;
    NNC_RETURN_IF_ERROR(spatialDims(x.shape(), w.shape(), ih, iw, kh, kw));
    const int64_t n = x.dim(0), c = x.dim(1), groups = attrs_.group;
    if (groups <= 0 || c % groups || w.dim(0) != c)
      return shapeMismatch("ConvTranspose weight " + shapeToString(w.shape()) +
                           " does not fit input " + shapeToString(x.shape()));
    const int64_t mg = w.dim(1), m = mg * groups, cg = c / groups;
    const bool one_d = x.rank() == 3;
    const int64_t rank = one_d ? 1 : 2;
    ConvGeometry g = kernelGeometry(attrs_, one_d, kh, kw);
    auto axis = [&](size_t a, int64_t in_size, int64_t k, int64_t& pb, int64_t& pe) -> int64_t {
      const AxisGeometry ag = convTransposeAxis(attrs_, a, rank, in_size, k);
      pb = ag.pad_begin;
      pe = ag.pad_end;
      return ag.out;
    };
    int64_t oh = 1;
    if (!one_d) oh = axis(0, ih, kh, g.pad_top, g.pad_bottom);
    const int64_t ow = axis(rank - 1, iw, kw, g.pad_left, g.pad_right);
    if (oh <= 0 || ow <= 0) return shapeMismatch("ConvTranspose output would be empty");
    Tensor y(DType::kFloat32, one_d ? Shape{n, m, ow} : Shape{n, m, oh, ow});
    const int64_t kk = mg * kh * kw, pin = ih * iw;
    const float* xd = x.data<float>().data();
    const float* wd = w.data<float>().data();
    float* yd = y.mutableData<float>().data();
    Eigen::setNbThreads(ctx.num_threads);
    std::vector<float> col(static_cast<size_t>(kk * pin));
    for (int64_t s = 0; s < n; ++s) {
      for (int64_t gi = 0; gi < groups; ++gi) {
        // col[kk, pin] = W_g^T [kk, cg] * X_g [cg, pin]
        MapRM colm(col.data(), kk, pin);
        colm.noalias() = ConstMapRM(wd + gi * cg * kk, cg, kk).transpose() *
                         ConstMapRM(xd + (s * c + gi * cg) * pin, cg, pin);
        float* ys = yd + (s * m + gi * mg) * oh * ow;
        parallelFor(mg, ctx, kh * kw * pin, [&](int64_t oc) {
          float* yc = ys + oc * oh * ow;
          for (int64_t i = 0; i < kh; ++i)
            for (int64_t j = 0; j < kw; ++j) {
              const float* row = col.data() + ((oc * kh + i) * kw + j) * pin;
              for (int64_t yi = 0; yi < ih; ++yi) {
                const int64_t oy = yi * g.sh - g.pad_top + i * g.dh;
                if (oy < 0 || oy >= oh) continue;
                for (int64_t xi = 0; xi < iw; ++xi) {
                  const int64_t ox = xi * g.sw - g.pad_left + j * g.dw;
                  if (ox >= 0 && ox < ow) yc[oy * ow + ox] += row[yi * iw + xi];
                }
              }
            }
        });
      }
    }
    if (b) {
      if (b->numel() != m) return shapeMismatch("ConvTranspose bias size mismatch");
      const float* bd = b->data<float>().data();
      const int64_t p = oh * ow;
      for (int64_t i = 0; i < n * m; ++i)
        for (int64_t j = 0; j < p; ++j) yd[i * p + j] += bd[i % m];
    }
    out[0] = std::move(y);
    return Status::ok();
  }

 private:
  ConvAttrs attrs_;
};

}  // namespace

std::unique_ptr<Kernel> makeFusedConv(const Node& conv, Tensor weight, std::vector<float> bias,
                                      const Epilogue& act) {
  return std::make_unique<ConvKernel>(ConvAttrs::of(conv), std::move(weight), std::move(bias), act);
}

void registerConvKernels(KernelRegistry& r) {
  r.add("Conv", [](const KernelBuildContext& ctx) -> StatusOr<std::unique_ptr<Kernel>> {
    const Node& n = ctx.node;
    const Tensor* w = n.inputs().size() > 1 && n.input(1) ? n.input(1)->constantData() : nullptr;
    const Tensor* b = n.inputs().size() > 2 && n.input(2) ? n.input(2)->constantData() : nullptr;
    const bool has_b = n.inputs().size() > 2 && n.input(2);
    // Only remember B when it is constant too (or absent), so a cached packing is always valid.
    if (has_b && !b) w = nullptr;
    return std::unique_ptr<Kernel>(new ConvKernel(ConvAttrs::of(n), w, b));
  });
  r.add("ConvTranspose", [](const KernelBuildContext& ctx) -> StatusOr<std::unique_ptr<Kernel>> {
    return std::unique_ptr<Kernel>(new ConvTransposeKernel(ConvAttrs::of(ctx.node)));
  });
}

}  // namespace nnc::exec
