// AdaRound over a quantized model: finds each layer's integer weights behind its
// DequantizeLinear, streams the layer's inputs from the partly re-rounded model into Gram
// matrices (im2col for Conv) and writes the learned integers back (adaround.h).

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "nncompress/exec/executor.h"
#include "nncompress/ir/batch_norm.h"
#include "nncompress/ir/weight_layout.h"
#include "nncompress/quant/adaround.h"

namespace nnc::quant {
namespace {

// Where a layer's integer weights live and how element (o, k) of the [O, K] problem maps onto
// the stored tensors.
struct WeightSite {
  Node* layer = nullptr;
  Node* dequantize = nullptr;
  const Tensor* float_weight = nullptr;  // in the reference model
  int64_t rows = 0, cols = 0, groups = 1;
  bool k_major = false;  // [K, O] storage (Gemm without transB, MatMul)
  int64_t index(int64_t o, int64_t k) const { return k_major ? k * rows + o : o * cols + k; }
};

StatusOr<WeightSite> findSite(const Model& reference, Model& quantized, const QuantizedLayer& l) {
  WeightSite s;
  Value* y = quantized.graph->findValue(l.quantized_output);
  s.layer = y ? y->producer() : nullptr;
  const Value* ry = reference.graph->findValue(l.output);
  const Node* rn = ry ? ry->producer() : nullptr;
  if (!s.layer || !rn || s.layer->opType() != rn->opType())
    return invalidArgument("layer '" + l.name + "' not found");
  Node* dq = s.layer->input(1) ? s.layer->input(1)->producer() : nullptr;
  if (dq && dq->isOp("Reshape")) dq = dq->input(0)->producer();  // int4 Conv: [O, K] then 4-D
  s.float_weight = constantFloat32(rn->input(1));
  if (!dq || !dq->isOp("DequantizeLinear") || !s.float_weight || !dq->input(0)->constantData() ||
      !constantFloat32(dq->input(1)))
    return unsupported("layer '" + l.name + "' has no constant integer weight");
  s.dequantize = dq;
  const Tensor& w = *s.float_weight;
  if (s.layer->isOp("Conv")) {
    if (w.rank() != 4) return unsupported("AdaRound: only 2-D Conv");
    s.rows = w.dim(0), s.cols = w.numel() / w.dim(0), s.groups = s.layer->intAttr("group", 1);
  } else if (w.rank() == 2) {
    s.k_major = weightLayout(*s.layer)->in_axis == 0;
    s.rows = s.k_major ? w.dim(1) : w.dim(0), s.cols = s.k_major ? w.dim(0) : w.dim(1);
    if (s.layer->isOp("Gemm") && s.layer->intAttr("transA", 0))
      return unsupported("AdaRound: Gemm with transA");
  } else {
    return unsupported("AdaRound: weight of rank " + std::to_string(w.rank()));
  }
  return s;
}

// Per-element scale of a DequantizeLinear (scalar, per-axis or blocked), in the q tensor's order.
std::vector<float> elementScales(const Node& dq, const Tensor& q) {
  const Tensor& scale = *constantFloat32(dq.input(1));
  std::vector<float> out(q.numel(), scale.data<float>()[0]);
  if (scale.numel() == 1) return out;
  const int64_t rank = q.rank();
  int64_t axis = dq.intAttr("axis", 1);
  if (axis < 0) axis += rank;
  const int64_t block = dq.intAttr("block_size", 0);
  int64_t inner = 1;
  for (int64_t d = axis + 1; d < rank; ++d) inner *= q.dim(d);
  const int64_t dim = q.dim(axis);
  const int64_t sdim = block > 0 ? (dim + block - 1) / block : dim;
  for (int64_t e = 0; e < q.numel(); ++e) {
    const int64_t outer = e / (inner * dim), c = (e / inner) % dim, in = e % inner;
    // Per-axis: a 1-D scale along `axis`; blocked: the q shape with `axis` cut into blocks.
    out[e] = block > 0 ? scale.data<float>()[(outer * sdim + c / block) * inner + in]
                       : scale.data<float>()[c];
  }
  return out;
}

int readInt(const Tensor& q, int64_t e) {
  return q.dtype() == DType::kInt4 ? packedNibble(q.bytes(), e, true) : q.data<int8_t>()[e];
}

// Adds the im2col columns of one input batch to the per-group Gram sums.
Status addConvColumns(const Node& conv, const Tensor& x, const Tensor& w,
                      std::vector<Eigen::MatrixXf>& gram, int64_t& columns) {
  if (x.rank() != 4 || x.dtype() != DType::kFloat32) return unsupported("Conv input not 4-D float");
  if (conv.hasAttribute("auto_pad") && conv.stringAttr("auto_pad", "NOTSET") != "NOTSET")
    return unsupported("auto_pad");
  const int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2), wd = x.dim(3);
  const int64_t groups = conv.intAttr("group", 1), cg = c / groups, kh = w.dim(2), kw = w.dim(3);
  const auto pads = conv.intsAttr("pads", {0, 0, 0, 0});
  const auto strides = conv.intsAttr("strides", {1, 1});
  const auto dil = conv.intsAttr("dilations", {1, 1});
  const int64_t ho = (h + pads[0] + pads[2] - dil[0] * (kh - 1) - 1) / strides[0] + 1;
  const int64_t wo = (wd + pads[1] + pads[3] - dil[1] * (kw - 1) - 1) / strides[1] + 1;
  const int64_t k = cg * kh * kw, p = n * ho * wo;
  const float* xd = x.data<float>().data();
  Eigen::MatrixXf col(k, p);
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t b = 0; b < n; ++b)
      for (int64_t oy = 0; oy < ho; ++oy)
        for (int64_t ox = 0; ox < wo; ++ox) {
          const int64_t j = (b * ho + oy) * wo + ox;
          for (int64_t ci = 0; ci < cg; ++ci)
            for (int64_t ky = 0; ky < kh; ++ky)
              for (int64_t kx = 0; kx < kw; ++kx) {
                const int64_t iy = oy * strides[0] - pads[0] + ky * dil[0];
                const int64_t ix = ox * strides[1] - pads[1] + kx * dil[1];
                const bool in = iy >= 0 && iy < h && ix >= 0 && ix < wd;
                col((ci * kh + ky) * kw + kx, j) =
                    in ? xd[((b * c + g * cg + ci) * h + iy) * wd + ix] : 0.f;
              }
        }
    gram[g].noalias() += col * col.transpose();
  }
  columns += p;
  return Status::ok();
}

Status addRowColumns(const Tensor& x, int64_t k, Eigen::MatrixXf& gram, int64_t& columns) {
  if (x.dtype() != DType::kFloat32 || x.numel() % k != 0) return unsupported("input width");
  const int64_t p = x.numel() / k;
  Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> rows(
      x.data<float>().data(), p, k);
  gram.noalias() += rows.transpose() * rows;
  columns += p;
  return Status::ok();
}

// E[x x^T] of the layer's input over the first samples, in the current quantized model.
StatusOr<std::vector<Eigen::MatrixXf>> inputGram(const Model& quantized, const WeightSite& s,
                                                 data::SampleReader& reader,
                                                 const AdaRoundOptions& o) {
  std::vector<Eigen::MatrixXf> gram(s.groups, Eigen::MatrixXf::Zero(s.cols, s.cols));
  exec::ExecutorOptions eo;
  eo.num_threads = o.threads;
  NNC_ASSIGN_OR_RETURN(auto ex, exec::Executor::create(quantized, eo));
  const std::string input = s.layer->input(0)->name();
  int64_t columns = 0;
  Status failed = Status::ok();
  const int64_t total = std::min(o.samples, reader.size());
  for (int64_t start = 0; start < total; start += o.batch) {
    NNC_ASSIGN_OR_RETURN(std::vector<Tensor> feeds,
                         reader.readFeeds(start, std::min(o.batch, total - start)));
    NNC_ASSIGN_OR_RETURN(auto out, ex->run(std::move(feeds), [&](const Value& v, const Tensor& t) {
      if (v.name() != input || !failed.isOk()) return;
      failed = s.layer->isOp("Conv") ? addConvColumns(*s.layer, t, *s.float_weight, gram, columns)
                                     : addRowColumns(t, s.cols, gram[0], columns);
    }));
    (void)out;
    NNC_RETURN_IF_ERROR(failed);
  }
  if (columns == 0) return internalError("AdaRound: the layer's input was never computed");
  for (auto& g : gram) g /= float(columns);
  return gram;
}

// Builds the problem, solves it and writes the integers back; returns (nearest, adaround) error.
StatusOr<std::pair<double, double>> reRound(Model& quantized, const WeightSite& s,
                                            std::vector<Eigen::MatrixXf> gram,
                                            const AdaRoundOptions& o) {
  Graph& g = *quantized.graph;
  const Tensor& q = *s.dequantize->input(0)->constantData();
  const std::vector<float> scales = elementScales(*s.dequantize, q);
  RoundingProblem p;
  p.weights.resize(s.rows, s.cols);
  p.scales.resize(s.rows, s.cols);
  p.gram = std::move(gram);
  p.group_of_row.resize(s.rows);
  const int64_t rows_per_group = s.rows / s.groups;
  const auto wd = s.float_weight->data<float>();
  for (int64_t r = 0; r < s.rows; ++r) {
    p.group_of_row[r] = int(r / rows_per_group);
    for (int64_t c = 0; c < s.cols; ++c) {
      p.weights(r, c) = wd[s.index(r, c)];
      p.scales(r, c) = scales[s.index(r, c)];
    }
  }
  const bool int4 = q.dtype() == DType::kInt4;
  p.qmin = int4 ? -7 : -127, p.qmax = int4 ? 7 : 127;
  Eigen::MatrixXi current(s.rows, s.cols);
  for (int64_t r = 0; r < s.rows; ++r)
    for (int64_t c = 0; c < s.cols; ++c) current(r, c) = readInt(q, s.index(r, c));
  const Eigen::MatrixXi learned = adaRound(p, o);
  const double before = reconstructionError(p, current), after = reconstructionError(p, learned);
  if (!(after < before)) return std::make_pair(before, before);  // keep nearest
  Tensor nq(q.dtype(), q.shape());
  for (int64_t r = 0; r < s.rows; ++r)
    for (int64_t c = 0; c < s.cols; ++c) {
      const int64_t e = s.index(r, c);
      if (int4)
        setPackedNibble(nq.mutableBytes(), e, learned(r, c));
      else
        nq.mutableData<int8_t>()[e] = int8_t(learned(r, c));
    }
  Value* old = s.dequantize->input(0);
  s.dequantize->setInput(0, g.addInitializer(old->name() + "_ada", std::move(nq)));
  if (!old->hasUses() && old->isInitializer() && !old->isGraphInput()) g.eraseValue(old);
  return std::make_pair(before, after);
}

}  // namespace

StatusOr<int> adaRoundModel(const Model& reference, Model& quantized,
                            const std::vector<QuantizedLayer>& layers, data::SampleReader& reader,
                            const AdaRoundOptions& options, AdaRoundCache* cache) {
  int done = 0;
  for (const QuantizedLayer& l : layers) {
    auto site = findSite(reference, quantized, l);
    if (!site.isOk()) {
      spdlog::debug("AdaRound skips {}: {}", l.name, site.status().message());
      continue;
    }
    Value* q = site->dequantize->input(0);
    if (cache) {
      auto hit = cache->find(l.name);
      if (hit != cache->end() && hit->second.dtype() == q->constantData()->dtype() &&
          hit->second.shape() == q->constantData()->shape()) {
        site->dequantize->setInput(
            0, quantized.graph->addInitializer(q->name() + "_ada", Tensor(hit->second)));
        if (!q->hasUses() && q->isInitializer() && !q->isGraphInput())
          quantized.graph->eraseValue(q);
        ++done;
        continue;
      }
    }
    auto gram = inputGram(quantized, *site, reader, options);
    if (!gram.isOk()) {
      spdlog::debug("AdaRound skips {}: {}", l.name, gram.status().message());
      continue;
    }
    NNC_ASSIGN_OR_RETURN(auto errors, reRound(quantized, *site, std::move(gram).value(), options));
    spdlog::info("AdaRound {}: output MSE {:.3e} (nearest) -> {:.3e}", l.name, errors.first,
                 errors.second);
    if (cache) (*cache)[l.name] = *site->dequantize->input(0)->constantData();
    done += errors.second < errors.first;
  }
  return done;
}

}  // namespace nnc::quant
