// Least-squares recovery after pruning, without gradients (METHODS.md, method 3 step 3); BatchNorm
// re-estimation is in batch_norm_reestimation.cc, the calibration passes in calibration_passes.cc.
//
// Least-squares reconstruction (He et al. 2017, ThiNet): for a layer y = W x + b whose input
// lost channels, on calibration data
//     min_{W', b'} sum_positions | y_orig[kept outputs] - (W' x_pruned + b') |^2 + ridge
// where x_pruned is the pruned model's input to the layer (upstream already refit) and y_orig
// the unpruned model's output of the same node (surgery keeps node output names). For a Conv, x
// is the im2col patch of one output position (Cin*kh*kw features, pads/strides/dilations
// respected); positions are a fixed random subset per image. Layers are refit level by level
// (level = number of refit layers on the longest path above): one pass of the original model
// records every layer's targets (kept channels, sampled positions) in unnamed temporary files,
// then each level is one pass of the pruned model, truncated after the level's inputs, with
// every earlier level already refit; a level's pass starts from the activations the earlier
// passes computed (kept per batch while they fit in LeastSquaresOptions::cache_bytes), so each
// node runs once per batch over all levels. Memory: one batch plus F^2 + F*M doubles per layer,
// the kept activations; the temporary files grow with the samples (resnet fixture: about 50 KB
// per image). The normal equations are summed in fixed column bands (least_squares.h), so
// results do not depend on the thread count.
// Residual compensation: a layer that reaches an Add through BatchNorms only is fit to the
// Add's output, y_orig + (r_orig - r_pruned) / bn_scale, when the other operand r is final.
// Not refit: grouped and depthwise convolutions (per-channel, their kept channels are exact when
// their input is), MatMul biases (a following Add keeps its constant).

#include "nncompress/prune/recovery.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <numeric>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "calibration_passes.h"
#include "least_squares.h"
#include "nncompress/exec/executor.h"
#include "nncompress/ir/batch_norm.h"
#include "nncompress/ir/conv_geometry.h"
#include "nncompress/ir/weight_layout.h"
#include "recovery_util.h"

namespace nnc {
namespace {

using calib::checkCalibration;
using calib::forEachBatch;
using calib::Runner;
using calib::threadsOf;
using recovery::layerName;
using recovery::setConstantInput;

enum class LayerKind { kConv, kGemm, kMatMul };

// The original model's outputs of one layer on the calibration samples, restricted to what the
// regression uses: written once, read back in the same order in the layer's pass. An unnamed
// temporary file (removed when closed), so memory does not grow with the sample count and the
// original model runs once instead of once per level.
class TargetFile {
 public:
  TargetFile() = default;
  TargetFile(TargetFile&& other) noexcept
      : file_(std::exchange(other.file_, nullptr)), reading_(other.reading_) {}
  TargetFile& operator=(TargetFile&&) = delete;
  TargetFile(const TargetFile&) = delete;
  TargetFile& operator=(const TargetFile&) = delete;
  ~TargetFile() {
    if (file_) std::fclose(file_);
  }
  Status write(const std::vector<float>& values) {
    if (!file_ && !(file_ = std::tmpfile()))
      return ioError("cannot create a temporary file for calibration targets");
    if (std::fwrite(values.data(), sizeof(float), values.size(), file_) != values.size())
      return ioError("cannot write calibration targets to a temporary file (disk full?)");
    return Status::ok();
  }
  Status read(std::vector<float>& values) {
    if (!file_) return internalError("calibration targets were not recorded");
    if (!reading_) {
      if (std::fflush(file_) != 0 || std::fseek(file_, 0, SEEK_SET) != 0)
        return ioError("cannot read back calibration targets");
      reading_ = true;
    }
    if (std::fread(values.data(), sizeof(float), values.size(), file_) != values.size())
      return internalError("calibration targets ended early");
    return Status::ok();
  }

 private:
  std::FILE* file_ = nullptr;
  bool reading_ = false;
};

struct RefitLayer {
  Node* node = nullptr;            // in the pruned model
  const Node* original = nullptr;  // the same layer in the original model
  LayerKind kind = LayerKind::kConv;
  int level = 0;
  std::vector<int64_t> keep;     // original output channels this layer still computes
  bool bias = false;             // a ones column in the design matrix
  lsq::MatrixD w0;               // features x outputs: the weights after surgery
  float alpha = 1, beta = 1;     // Gemm
  bool trans_b = false;          // Gemm
  int64_t out_h = 1, out_w = 1;  // Conv output size (from the original's output)
  // Residual compensation: the layer feeds, through per-channel affine BatchNorms only, an Add
  // whose other operand `residual` (same name in both models) is final at this layer's level.
  // Target y_orig + (r_orig - r_pruned) / scale makes the Add's output match the original's.
  std::string residual;
  std::vector<double> inv_scale;  // 1 / BN scale product, per kept output channel
  std::unique_ptr<lsq::NormalEquations> equations;
  TargetFile targets;
};

// The constant weight of a layer we can refit, or nullptr (then the layer is left alone).
const Tensor* refitWeight(const Node& n, LayerKind& kind) {
  const Tensor* w = n.input(1) && n.input(1)->constantData() ? n.input(1)->constantData() : nullptr;
  if (!w || w->dtype() != DType::kFloat32 || !n.input(0) || n.numOutputs() < 1) return nullptr;
  const Value* b = n.input(2);
  if (b && (!b->constantData() || b->constantData()->dtype() != DType::kFloat32)) return nullptr;
  if (n.isOp("Conv")) {
    if (n.intAttr("group", 1) != 1 || (w->rank() != 3 && w->rank() != 4)) return nullptr;
    kind = LayerKind::kConv;
    return w;
  }
  if (n.isOp("Gemm")) {
    if (n.intAttr("transA", 0) != 0 || w->rank() != 2 || n.floatAttr("alpha", 1.f) == 0.f)
      return nullptr;
    const int64_t m = weightLayout(n)->outputChannels(w->shape());
    if (b && b->constantData()->numel() != 1 && b->constantData()->numel() != m) return nullptr;
    kind = LayerKind::kGemm;
    return w;
  }
  if (n.isOp("MatMul")) {
    if (w->rank() != 2) return nullptr;
    kind = LayerKind::kMatMul;
    return w;
  }
  return nullptr;
}

// Input features a layer we refit reads: the length of its weight's input axis (per group for
// grouped convolutions; MatMul: the second-to-last axis of an N-D weight), or -1.
int64_t consumedFeatures(const Node& n) {
  const Tensor* w = n.input(1) ? n.input(1)->constantData() : nullptr;
  if (!w || w->rank() < 2 || !(n.isOp("Conv") || n.isOp("Gemm") || n.isOp("MatMul"))) return -1;
  if (n.isOp("MatMul")) return w->dim(w->rank() - 2);
  return w->dim(weightLayout(n)->in_axis);
}

// Did the layer lose input channels (its consumer weight axis is shorter than the original's)?
// Grouped convolutions count too: each group reads fewer channels.
bool inputShrank(const Node& pruned, const Node* original) {
  if (!original) return false;
  const int64_t now = consumedFeatures(pruned);
  return now >= 0 && now != consumedFeatures(*original);
}

// Features x outputs weights (plus a bias row) of the layer as it is now.
void initialWeights(RefitLayer& layer) {
  const Node& n = *layer.node;
  const Tensor& w = *n.input(1)->constantData();
  const Tensor* b = n.input(2) ? n.input(2)->constantData() : nullptr;
  const float* wd = w.data<float>().data();
  if (layer.kind == LayerKind::kConv) {
    const int64_t m = w.dim(0), f = w.numel() / m;
    layer.bias = true;
    layer.w0.resize(f + 1, m);
    for (int64_t o = 0; o < m; ++o) {
      for (int64_t i = 0; i < f; ++i) layer.w0(i, o) = wd[o * f + i];
      layer.w0(f, o) = b ? b->data<float>()[o] : 0.0;
    }
    return;
  }
  if (layer.kind == LayerKind::kGemm) {
    layer.alpha = n.floatAttr("alpha", 1.f);
    layer.beta = n.floatAttr("beta", 1.f);
    layer.trans_b = n.intAttr("transB", 0) != 0;
    const int64_t k = layer.trans_b ? w.dim(1) : w.dim(0), m = layer.trans_b ? w.dim(0) : w.dim(1);
    layer.bias = layer.beta != 0.f;
    layer.w0.resize(k + (layer.bias ? 1 : 0), m);
    for (int64_t o = 0; o < m; ++o) {
      for (int64_t i = 0; i < k; ++i)
        layer.w0(i, o) = double(layer.alpha) * wd[layer.trans_b ? o * k + i : i * m + o];
      if (layer.bias)
        layer.w0(k, o) = b ? double(layer.beta) * b->data<float>()[b->numel() == 1 ? 0 : o] : 0.0;
    }
    return;
  }
  const int64_t k = w.dim(0), m = w.dim(1);  // MatMul: no bias
  layer.w0.resize(k, m);
  for (int64_t i = 0; i < k; ++i)
    for (int64_t o = 0; o < m; ++o) layer.w0(i, o) = wd[i * m + o];
}

// Writes a solution (features x outputs, bias row last) into the pruned model.
void writeWeights(Graph& graph, RefitLayer& layer, const lsq::MatrixD& s) {
  Node& n = *layer.node;
  const Tensor& w = *n.input(1)->constantData();
  Tensor nw(DType::kFloat32, w.shape());
  float* wd = nw.mutableData<float>().data();
  const std::string base = layerName(n);
  if (layer.kind == LayerKind::kConv) {
    const int64_t m = w.dim(0), f = w.numel() / m;
    Tensor nb(DType::kFloat32, {m});
    for (int64_t o = 0; o < m; ++o) {
      for (int64_t i = 0; i < f; ++i) wd[o * f + i] = static_cast<float>(s(i, o));
      nb.mutableData<float>()[o] = static_cast<float>(s(f, o));
    }
    setConstantInput(graph, n, 1, std::move(nw), base + "_weight");
    setConstantInput(graph, n, 2, std::move(nb), base + "_bias");
    return;
  }
  if (layer.kind == LayerKind::kGemm) {
    const int64_t k = layer.trans_b ? w.dim(1) : w.dim(0), m = layer.trans_b ? w.dim(0) : w.dim(1);
    for (int64_t o = 0; o < m; ++o)
      for (int64_t i = 0; i < k; ++i)
        wd[layer.trans_b ? o * k + i : i * m + o] = static_cast<float>(s(i, o) / layer.alpha);
    setConstantInput(graph, n, 1, std::move(nw), base + "_weight");
    if (layer.bias) {
      const Tensor* old = n.input(2) ? n.input(2)->constantData() : nullptr;
      Tensor nb(DType::kFloat32, old && old->numel() == m ? old->shape() : Shape{m});
      for (int64_t o = 0; o < m; ++o)
        nb.mutableData<float>()[o] = static_cast<float>(s(k, o) / layer.beta);
      setConstantInput(graph, n, 2, std::move(nb), base + "_bias");
    }
    return;
  }
  const int64_t k = w.dim(0), m = w.dim(1);
  for (int64_t i = 0; i < k; ++i)
    for (int64_t o = 0; o < m; ++o) wd[i * m + o] = static_cast<float>(s(i, o));
  setConstantInput(graph, n, 1, std::move(nw), base + "_weight");
}

// Conv geometry from the node, its (pruned) input and the original output's spatial size.
StatusOr<lsq::PatchGeometry> convGeometry(const Node& n, const Shape& x, const Shape& y) {
  const Tensor& w = *n.input(1)->constantData();
  if (x.size() != w.shape().size() || y.size() != x.size())
    return shapeMismatch("Conv '" + layerName(n) + "': input " + shapeToString(x) +
                         " does not fit weight " + shapeToString(w.shape()));
  const bool one_d = x.size() == 3;
  const size_t rank = one_d ? 1 : 2;
  lsq::PatchGeometry g;
  g.channels = x[1];
  if (g.channels != w.dim(1))
    return shapeMismatch("Conv '" + layerName(n) + "': input has " + std::to_string(x[1]) +
                         " channels, weight expects " + std::to_string(w.dim(1)));
  g.ih = one_d ? 1 : x[2];
  g.iw = x.back();
  g.oh = one_d ? 1 : y[2];
  g.ow = y.back();
  g.kh = one_d ? 1 : w.dim(2);
  g.kw = w.shape().back();
  const ConvWindow window = ConvWindow::of(n);
  int64_t* stride[2] = {&g.sh, &g.sw};
  int64_t* dilation[2] = {&g.dh, &g.dw};
  int64_t* pad[2] = {&g.pad_top, &g.pad_left};
  const int64_t in[2] = {g.ih, g.iw}, out[2] = {g.oh, g.ow}, k[2] = {g.kh, g.kw};
  for (size_t a = 0; a < rank; ++a) {
    const size_t axis = one_d ? 1 : a;  // index into the 2-D arrays
    NNC_ASSIGN_OR_RETURN(const AxisGeometry geo, convAxis(window, a, rank, in[axis], k[axis]));
    if (geo.out != out[axis])
      return shapeMismatch("Conv '" + layerName(n) + "': output size " + std::to_string(out[axis]) +
                           " does not follow from the attributes");
    *stride[axis] = window.stride(a);
    *dilation[axis] = window.dilation(a);
    *pad[axis] = geo.pad_begin;
  }
  return g;
}

// Finds the Add that `layer`'s output reaches through single-use inference BatchNorms, and its
// other operand; fills layer.residual and layer.inv_scale. Left empty when there is none.
void findResidual(RefitLayer& layer) {
  const int64_t m = layer.w0.cols();
  std::vector<double> scale(m, 1.0);
  const Value* v = layer.node->output(0);
  while (v && v->uses().size() == 1 && !v->isGraphOutput()) {
    const Node* u = v->uses()[0].node;
    if (u->isOp("BatchNormalization") && u->input(0) == v && u->numOutputs() == 1) {
      const auto bn = batchNormAffine(*u, m);
      if (!bn) return;
      for (int64_t o = 0; o < m; ++o) scale[o] *= bn->scale[o];
      v = u->output(0);
      continue;
    }
    if (u->isOp("Add") && u->numInputs() == 2 && u->input(0) && u->input(1) &&
        u->input(0) != u->input(1)) {
      const Value* other = u->input(0) == v ? u->input(1) : u->input(0);
      // Same dims (the batch dim may be symbolic): no broadcasting in the Add.
      const auto& a = v->type().shape;
      const auto& b = other->type().shape;
      if (other->constantData() || !a || !b || *a != *b) return;
      for (double sc : scale)
        if (!(std::abs(sc) > 1e-6)) return;
      layer.residual = other->name();
      layer.inv_scale.resize(m);
      for (int64_t o = 0; o < m; ++o) layer.inv_scale[o] = 1.0 / scale[o];
    }
    return;
  }
}

// Output positions of one image used for a Conv layer (all, or a seeded random subset).
std::vector<int64_t> positionsOf(int64_t total, int64_t image, const LeastSquaresOptions& o) {
  const int64_t count =
      o.max_positions_per_image > 0 ? std::min(total, o.max_positions_per_image) : total;
  return lsq::samplePositions(total, count, o.seed, static_cast<uint64_t>(image));
}

// Records one batch of the original layer's outputs `y` as target rows (kept channels, sampled
// positions), in the order accumulate() will build the matching design rows.
Status recordTargets(RefitLayer& layer, const Tensor& y, const Tensor* residual,
                     int64_t first_sample, const LeastSquaresOptions& options) {
  if (y.dtype() != DType::kFloat32 || y.rank() < 2)
    return unsupported("layer '" + layerName(*layer.node) + "': only float32 outputs are refit");
  if (residual && (residual->shape() != y.shape() || residual->dtype() != DType::kFloat32))
    return shapeMismatch("residual '" + layer.residual + "' does not match the layer output");
  const int64_t m = layer.w0.cols();
  const float* yd = y.data<float>().data();
  const float* rd = residual ? residual->data<float>().data() : nullptr;
  // Original output plus the original residual in the layer's units, at flat index i, channel o.
  auto target = [&](int64_t i, int64_t o) {
    return static_cast<float>(yd[i] + (rd ? rd[i] * layer.inv_scale[o] : 0.0));
  };
  std::vector<float> rows;
  if (layer.kind == LayerKind::kConv) {
    if (y.rank() != 3 && y.rank() != 4) return internalError("Conv output rank");
    const int64_t n = y.dim(0), m_orig = y.dim(1);
    layer.out_h = y.rank() == 4 ? y.dim(2) : 1;
    layer.out_w = y.shape().back();
    const int64_t p = layer.out_h * layer.out_w;
    for (int64_t s = 0; s < n; ++s)
      for (int64_t pix : positionsOf(p, first_sample + s, options))
        for (int64_t o = 0; o < m; ++o)
          rows.push_back(target((s * m_orig + layer.keep[o]) * p + pix, o));
  } else {
    const int64_t m_orig = y.dim(y.rank() - 1), count = y.numel() / m_orig;
    rows.reserve(count * m);
    for (int64_t r = 0; r < count; ++r)
      for (int64_t o = 0; o < m; ++o) rows.push_back(target(r * m_orig + layer.keep[o], o));
  }
  return layer.targets.write(rows);
}

// Adds one batch: design rows from the pruned model's layer input `x`, targets read back.
Status accumulate(RefitLayer& layer, const Tensor& x, const Tensor* residual, int64_t first_sample,
                  const LeastSquaresOptions& options, int threads) {
  if (x.dtype() != DType::kFloat32)
    return unsupported("layer '" + layerName(*layer.node) + "': only float32 inputs are refit");
  const int64_t f = layer.w0.rows(), m = layer.w0.cols();
  const int64_t plain = f - (layer.bias ? 1 : 0);  // features without the ones column
  const float* xd = x.data<float>().data();
  lsq::RowMatrixD xs;  // one design row after the other: patches are written contiguously
  // Pruned residual at target row r, output o, subtracted from the recorded target below.
  std::vector<int64_t> residual_index;  // flat index of (row, output 0); outputs follow by `step`
  int64_t step = 1;
  if (residual && residual->dtype() != DType::kFloat32)
    return unsupported("residual '" + layer.residual + "' is not float32");
  if (layer.kind == LayerKind::kConv) {
    Shape y_shape = x.shape();
    y_shape[1] = m;
    if (y_shape.size() == 4) y_shape[2] = layer.out_h;
    y_shape.back() = layer.out_w;
    NNC_ASSIGN_OR_RETURN(lsq::PatchGeometry g, convGeometry(*layer.node, x.shape(), y_shape));
    if (g.patchSize() != plain) return internalError("Conv patch size mismatch");
    const int64_t n = x.dim(0), p = g.oh * g.ow;
    std::vector<std::vector<int64_t>> positions(n);
    std::vector<int64_t> offset(n + 1, 0);
    for (int64_t s = 0; s < n; ++s) {
      positions[s] = positionsOf(p, first_sample + s, options);
      offset[s + 1] = offset[s] + static_cast<int64_t>(positions[s].size());
    }
    const int64_t rows = offset[n];
    xs.resize(rows, f);
    if (residual) {
      if (residual->numel() != n * m * p)
        return shapeMismatch("residual '" + layer.residual + "' does not match the layer output");
      step = p;
      for (int64_t s = 0; s < n; ++s)
        for (int64_t pix : positions[s]) residual_index.push_back(s * m * p + pix);
    }
    for (int64_t s = 0; s < n; ++s) {
      const float* xi = xd + s * g.channels * g.ih * g.iw;
      for (size_t q = 0; q < positions[s].size(); ++q) {
        const int64_t r = offset[s] + static_cast<int64_t>(q);
        lsq::convPatch(xi, g, positions[s][q], xs.row(r).data());
        xs(r, f - 1) = 1.0;
      }
    }
  } else {
    if (x.rank() < 2 || x.dim(x.rank() - 1) != plain)
      return shapeMismatch("layer '" + layerName(*layer.node) + "': input " +
                           shapeToString(x.shape()) + " does not fit its weight");
    const int64_t rows = x.numel() / plain;
    xs.resize(rows, f);
    if (residual) {
      if (residual->numel() != rows * m)
        return shapeMismatch("residual '" + layer.residual + "' does not match the layer output");
      for (int64_t r = 0; r < rows; ++r) residual_index.push_back(r * m);
    }
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < plain; ++i) xs(r, i) = xd[r * plain + i];
      if (layer.bias) xs(r, f - 1) = 1.0;
    }
  }
  std::vector<float> t(static_cast<size_t>(xs.rows() * m));
  NNC_RETURN_IF_ERROR(layer.targets.read(t));
  lsq::RowMatrixD ts =
      Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
          t.data(), xs.rows(), m)
          .cast<double>();
  if (residual) {
    const float* rd = residual->data<float>().data();
    for (int64_t r = 0; r < ts.rows(); ++r)
      for (int64_t o = 0; o < m; ++o)
        ts(r, o) -= rd[residual_index[r] + o * step] * layer.inv_scale[o];
  }
  layer.equations->add(xs, ts, threads);
  return Status::ok();
}

// Output channels of the original layers that the plan keeps (producers of pruned groups).
// Keyed by the layer's output name: `analysis` may describe `original` or the copy that
// surgery then pruned (its producer nodes survive surgery, names unchanged).
StatusOr<std::unordered_map<std::string, std::vector<int64_t>>> keptOutputsOf(
    const ChannelAnalysis& analysis, const std::vector<GroupKeep>& plan) {
  std::unordered_map<std::string, std::vector<int64_t>> kept_outputs;
  for (const GroupKeep& k : plan) {
    if (k.group_id < 0 || k.group_id >= static_cast<int>(analysis.groups.size()))
      return invalidArgument("no channel group " + std::to_string(k.group_id));
    for (const GroupMember& m : analysis.groups[k.group_id].members)
      if (m.role == MemberRole::kProducer && m.node && m.node->output(0))
        kept_outputs[m.node->output(0)->name()] = m.mapping.indices(k.keep);
  }
  return kept_outputs;
}

// A layer to refit at `level`, its kept outputs checked against its pruned weight.
StatusOr<RefitLayer> makeRefitLayer(
    Node* n, const Node* orig, LayerKind kind, int level,
    const std::unordered_map<std::string, std::vector<int64_t>>& kept_outputs) {
  if (!orig)
    return invalidArgument("layer '" + layerName(*n) +
                           "' of the pruned model has no counterpart in the original (by "
                           "output name): pass the model pruning started from");
  RefitLayer layer;
  layer.node = n;
  layer.original = orig;
  layer.kind = kind;
  layer.level = level;
  initialWeights(layer);
  const Tensor& ow = *orig->input(1)->constantData();
  const int64_t m_orig = weightLayout(*orig)->outputChannels(ow.shape());
  if (auto it = kept_outputs.find(n->output(0)->name()); it != kept_outputs.end()) {
    layer.keep = it->second;
  } else {
    layer.keep.resize(m_orig);
    std::iota(layer.keep.begin(), layer.keep.end(), int64_t{0});
  }
  if (static_cast<int64_t>(layer.keep.size()) != layer.w0.cols())
    return invalidArgument("layer '" + layerName(*n) + "' has " + std::to_string(layer.w0.cols()) +
                           " outputs but the plan keeps " + std::to_string(layer.keep.size()) +
                           ": the analysis does not describe the original model");
  layer.equations = std::make_unique<lsq::NormalEquations>(layer.w0.rows(), layer.w0.cols());
  return layer;
}

// The layers to refit and the level of every value (refit layers above it on the longest path).
struct RefitPlan {
  std::vector<RefitLayer> layers;
  std::unordered_map<const Value*, int> depth;
  int levels = 0;
};

// Which layers to refit: mixing layers whose input shrank or differs from the original's
// (perturbed: downstream of a shrunk mixing layer). Level = refit layers on the longest path
// above, so layers of one level do not feed each other.
StatusOr<RefitPlan> planRefit(
    const Model& original, Graph& graph,
    const std::unordered_map<std::string, std::vector<int64_t>>& kept_outputs) {
  NNC_ASSIGN_OR_RETURN(std::vector<Node*> order, graph.topologicalOrder());
  RefitPlan plan;
  std::unordered_set<const Value*> perturbed;
  for (Node* n : order) {
    int d = 0;
    bool in_perturbed = false;
    for (const Value* in : n->inputs()) {
      if (!in) continue;
      if (auto it = plan.depth.find(in); it != plan.depth.end()) d = std::max(d, it->second);
      in_perturbed = in_perturbed || perturbed.count(in);
    }
    const Value* out0 = n->output(0);
    const Value* orig_out = out0 ? original.graph->findValue(out0->name()) : nullptr;
    const Node* orig = orig_out ? orig_out->producer() : nullptr;
    if (orig && orig->opType() != n->opType()) orig = nullptr;
    const bool shrank = inputShrank(*n, orig);
    LayerKind kind;
    const bool refit = (shrank || in_perturbed) && refitWeight(*n, kind) != nullptr;
    if (refit) {
      NNC_ASSIGN_OR_RETURN(RefitLayer layer, makeRefitLayer(n, orig, kind, d, kept_outputs));
      plan.layers.push_back(std::move(layer));
      plan.levels = std::max(plan.levels, d + 1);
    }
    for (const Value* out : n->outputs()) {
      if (!out) continue;
      plan.depth[out] = d + (refit ? 1 : 0);
      if (shrank || in_perturbed) perturbed.insert(out);
    }
  }
  return plan;
}

// Residual compensation only where the other operand is final when the layer is refit (no
// refit layer of this or a later level above it) and exists in the original too.
void chooseResiduals(const Model& original, const Graph& graph, RefitPlan& plan) {
  for (RefitLayer& l : plan.layers) {
    findResidual(l);
    if (l.residual.empty()) continue;
    const Value* r = graph.findValue(l.residual);
    auto it = plan.depth.find(r);
    if (!original.graph->findValue(l.residual) ||
        (it != plan.depth.end() && it->second > l.level)) {
      l.residual.clear();
      l.inv_scale.clear();
    }
  }
}

// One pass of the original model records every layer's targets.
Status recordAllTargets(const Model& original, std::vector<RefitLayer>& layers,
                        const CalibrationSource& calibration, const LeastSquaresOptions& options,
                        int threads) {
  std::vector<std::string> targets;  // layer outputs, then residuals
  for (const RefitLayer& l : layers) targets.push_back(l.original->output(0)->name());
  for (const RefitLayer& l : layers)
    targets.push_back(l.residual.empty() ? targets[0] : l.residual);
  NNC_ASSIGN_OR_RETURN(Runner original_run, Runner::make(original, targets, threads));
  const size_t count = layers.size();
  return forEachBatch(calibration, [&](int64_t first, const std::vector<Tensor>& feeds) {
    NNC_ASSIGN_OR_RETURN(std::vector<Tensor> ys, original_run.run(feeds));
    for (size_t i = 0; i < count; ++i) {
      const Tensor* r = layers[i].residual.empty() ? nullptr : &ys[original_run.slot[count + i]];
      NNC_RETURN_IF_ERROR(recordTargets(layers[i], ys[original_run.slot[i]], r, first, options)
                              .withContext("layer '" + layerName(*layers[i].node) + "'"));
    }
    return Status::ok();
  });
}

// Then one pass of the pruned model per level, with every earlier level already refit; each
// pass starts from the activations the previous ones computed (StagedPasses).
StatusOr<std::vector<LayerRecovery>> refitByLevel(Model& pruned, RefitPlan& plan,
                                                  const CalibrationSource& calibration,
                                                  const LeastSquaresOptions& options, int threads) {
  const int levels = plan.levels;
  std::vector<std::vector<RefitLayer*>> at_level(levels);
  std::vector<std::vector<std::string>> requests(levels);  // layer inputs, then residuals
  for (RefitLayer& l : plan.layers) {
    at_level[l.level].push_back(&l);
    requests[l.level].push_back(l.node->input(0)->name());
  }
  for (int level = 0; level < levels; ++level)
    for (const RefitLayer* l : at_level[level])
      requests[level].push_back(l->residual.empty() ? requests[level][0] : l->residual);
  calib::StagedPasses passes(pruned, std::move(requests), calibration, options.cache_bytes);
  std::vector<LayerRecovery> results;
  for (int level = 0; level < levels; ++level) {
    const std::vector<RefitLayer*>& now = at_level[level];
    if (now.empty()) continue;
    const size_t count = now.size();
    NNC_RETURN_IF_ERROR(passes.run(
        level, pruned, [&](int64_t first, const std::vector<const Tensor*>& xs) -> Status {
          for (size_t i = 0; i < count; ++i) {
            const Tensor* r = now[i]->residual.empty() ? nullptr : xs[count + i];
            NNC_RETURN_IF_ERROR(accumulate(*now[i], *xs[i], r, first, options, threads)
                                    .withContext("layer '" + layerName(*now[i]->node) + "'"));
          }
          return Status::ok();
        }));
    for (RefitLayer* l : now) {
      NNC_ASSIGN_OR_RETURN(lsq::MatrixD w, l->equations->solve(l->w0, options.ridge));
      LayerRecovery r;
      r.layer = layerName(*l->node);
      r.error_before = l->equations->relativeError(l->w0);
      r.error_after = l->equations->relativeError(w);
      writeWeights(*pruned.graph, *l, w);
      l->equations.reset();
      results.push_back(std::move(r));
    }
  }
  return results;
}

}  // namespace

StatusOr<std::vector<LayerRecovery>> reconstructLeastSquares(const Model& original, Model& pruned,
                                                             const ChannelAnalysis& analysis,
                                                             const std::vector<GroupKeep>& plan,
                                                             const CalibrationSource& calibration,
                                                             const LeastSquaresOptions& options) {
  NNC_RETURN_IF_ERROR(checkCalibration(calibration));
  if (!(options.ridge >= 0)) return invalidArgument("least squares: ridge must be >= 0");
  const int threads = threadsOf(calibration);
  NNC_ASSIGN_OR_RETURN(auto kept_outputs, keptOutputsOf(analysis, plan));
  Graph& graph = *pruned.graph;
  NNC_ASSIGN_OR_RETURN(RefitPlan refit, planRefit(original, graph, kept_outputs));
  if (refit.layers.empty()) return std::vector<LayerRecovery>{};
  if (options.compensate_residuals) chooseResiduals(original, graph, refit);
  NNC_RETURN_IF_ERROR(recordAllTargets(original, refit.layers, calibration, options, threads));
  NNC_ASSIGN_OR_RETURN(std::vector<LayerRecovery> results,
                       refitByLevel(pruned, refit, calibration, options, threads));
  graph.removeDeadNodes();
  return results;
}

}  // namespace nnc
