#include "nncompress/quant/bn_fold.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "nncompress/ir/batch_norm.h"
#include "nncompress/ir/weight_layout.h"

namespace nnc::quant {
namespace {

std::string displayName(const Node& n) { return n.name().empty() ? n.output(0)->name() : n.name(); }

// Checks the pattern and returns the number of output channels of `layer`, or -1 when the BN
// cannot be folded into it.
int64_t foldableChannels(const Node& layer, const Node& bn) {
  const Value* z = layer.output(0);
  if (layer.numOutputs() != 1 || z->uses().size() != 1 || z->isGraphOutput()) return -1;
  if (bn.input(0) != z || bn.output(0)->isGraphOutput()) return -1;
  const Tensor* w = constantFloat32(layer.input(1));
  if (w == nullptr) return -1;
  if (layer.input(2) != nullptr && constantFloat32(layer.input(2)) == nullptr) return -1;
  // Conv, ConvTranspose and Gemm (not with transA: its features are on A's axis 0).
  const auto layout = weightLayout(layer);
  const bool foldable_op = layer.isOp("Conv") || layer.isOp("ConvTranspose") || layer.isOp("Gemm");
  if (!layout || !foldable_op || !layout->fitsRank(w->rank()) || layout->data_channel_axis != 1)
    return -1;
  const int64_t channels = layout->outputChannels(w->shape());
  if (const Tensor* c = constantFloat32(layer.input(2));
      layer.isOp("Gemm") && c && c->numel() != 1 && c->numel() != channels)
    return -1;
  return batchNormAffine(bn, channels) ? channels : -1;
}

void foldInto(Graph& graph, Node& layer, Node& bn, int64_t channels) {
  const BatchNormAffine affine = *batchNormAffine(bn, channels);  // checked by foldableChannels
  const std::vector<double>& k = affine.scale;

  Tensor w = *constantFloat32(layer.input(1));
  auto wd = w.mutableData<float>();
  weightLayout(layer)->forEachElement(
      w.shape(), [&](int64_t out, int64_t, int64_t i) { wd[i] = float(wd[i] * k[out]); });
  std::vector<float> bias(channels, 0.f);
  if (const Tensor* b = constantFloat32(layer.input(2))) {
    const auto bd = b->data<float>();
    const double scale = layer.isOp("Gemm") ? layer.floatAttr("beta", 1.f) : 1.0;
    for (int64_t c = 0; c < channels; ++c) bias[c] = float(scale * bd[b->numel() == 1 ? 0 : c]);
  }
  for (int64_t c = 0; c < channels; ++c) bias[c] = float(k[c] * bias[c] + affine.shift[c]);
  if (layer.isOp("Gemm")) layer.setAttribute(Attribute::makeFloat("beta", 1.f));

  const std::string base = layer.name().empty() ? layer.output(0)->name() : layer.name();
  Value* new_w = graph.addInitializer(base + "_W", std::move(w));
  Value* new_b = graph.addInitializer(base + "_B", Tensor::fromVector<float>({channels}, bias));
  Value* old_w = layer.input(1);
  Value* old_b = layer.input(2);
  layer.setInput(1, new_w);
  if (layer.numInputs() > 2)
    layer.setInput(2, new_b);
  else
    layer.addInput(new_b);
  Value* y = bn.output(0);
  graph.replaceAllUsesWith(y, layer.output(0));
  std::vector<Value*> bn_params(bn.inputs().begin() + 1, bn.inputs().end());
  graph.eraseNode(&bn);
  for (Value* v : {old_w, old_b})
    if (v && v->isInitializer() && !v->hasUses() && !v->isGraphInput()) graph.eraseValue(v);
  for (Value* v : bn_params)
    if (v && v->isInitializer() && !v->hasUses() && !v->isGraphInput()) graph.eraseValue(v);
}

}  // namespace

StatusOr<std::vector<FoldedBatchNorm>> foldBatchNorms(Graph& graph) {
  std::vector<FoldedBatchNorm> folded;
  std::vector<Node*> bns;
  for (const auto& n : graph.nodes())
    if (n->isOp("BatchNormalization")) bns.push_back(n.get());
  for (Node* bn : bns) {
    Value* in = bn->input(0);
    Node* layer = in ? in->producer() : nullptr;
    if (layer == nullptr) continue;
    const int64_t channels = foldableChannels(*layer, *bn);
    if (channels <= 0) continue;
    FoldedBatchNorm f{displayName(*bn), displayName(*layer)};
    foldInto(graph, *layer, *bn, channels);
    spdlog::debug("folded BatchNormalization {} into {} {}", f.batchnorm, layer->opType(), f.into);
    folded.push_back(std::move(f));
  }
  graph.removeDeadNodes();  // Constant nodes that held BN statistics
  return folded;
}

namespace {

Value* onlyReader(const Value* v, Node** reader) {
  if (v == nullptr || v->uses().size() != 1 || v->isGraphOutput()) return nullptr;
  *reader = v->uses()[0].node;
  return (*reader)->output(0);
}

// The layer that receives BN's scale through Relu and per-channel pools (see the header), with
// `channels` input channels; nullptr when there is none.
Node* layerAfterRelu(const Node& bn, int64_t channels) {
  Node* relu = nullptr;
  Value* cur = onlyReader(bn.output(0), &relu);
  if (cur == nullptr || !relu->isOp("Relu")) return nullptr;
  for (int steps = 0; steps < 8; ++steps) {
    if (cur == nullptr || cur->uses().size() != 1 || cur->isGraphOutput()) return nullptr;
    Node* next = cur->uses()[0].node;
    if (cur->uses()[0].input_index != 0) return nullptr;
    const bool pool = next->isOp("MaxPool") || next->isOp("AveragePool") ||
                      next->isOp("GlobalAveragePool") || next->isOp("GlobalMaxPool");
    if (pool) {
      for (size_t i = 1; i < next->numOutputs(); ++i)
        if (next->output(i) && next->output(i)->hasUses()) return nullptr;
      cur = next->output(0);
      continue;
    }
    if (next->isOp("Flatten")) {  // [N, C, 1, 1] -> [N, C] keeps channel c at feature c
      const auto& shape = cur->type().shape;
      if (next->intAttr("axis", 1) != 1 || !shape || shape->size() < 2) return nullptr;
      for (size_t d = 2; d < shape->size(); ++d)
        if ((*shape)[d].value != 1) return nullptr;
      cur = next->output(0);
      continue;
    }
    const Tensor* w = constantFloat32(next->input(1));
    if (w == nullptr) return nullptr;
    const auto layout = weightLayout(*next);
    const bool scalable_op = next->isOp("Conv") || next->isOp("Gemm");
    if (scalable_op && layout->fitsRank(w->rank()) && layout->data_channel_axis == 1 &&
        layout->inputChannels(w->shape()) == channels)
      return next;
    return nullptr;
  }
  return nullptr;
}

// W'[:, c] = k_c W[:, c] along the layer's input-channel axis.
void scaleInputChannels(Graph& graph, Node& layer, const std::vector<double>& k) {
  Tensor w = *constantFloat32(layer.input(1));
  auto wd = w.mutableData<float>();
  weightLayout(layer)->forEachElement(
      w.shape(), [&](int64_t, int64_t in, int64_t i) { wd[i] = float(wd[i] * k[in]); });
  Value* old_w = layer.input(1);
  layer.setInput(1, graph.addInitializer(old_w->name() + "_s", std::move(w)));
  if (!old_w->hasUses() && old_w->isInitializer() && !old_w->isGraphInput())
    graph.eraseValue(old_w);
}

// Calls f(output channel, input channel, element index) for every weight element of a Conv or
// Gemm that layerAfterRelu accepted (input channel in the BN's channel numbering).
template <typename F>
void forEachWeight(const Node& layer, const Tensor& w, F f) {
  weightLayout(layer)->forEachElement(w.shape(), f);
}

int64_t outputChannels(const Node& layer, const Tensor& w) {
  return weightLayout(layer)->outputChannels(w.shape());
}

// Range of channel c after Relu, from the BN's gamma and beta (its output is ~N(beta, gamma^2)).
std::vector<double> reluRanges(const Node& bn, int64_t channels) {
  const Tensor* gamma = constantFloat32(bn.input(1));
  const Tensor* beta = constantFloat32(bn.input(2));
  std::vector<double> r(channels, 1.0);
  if (!gamma || !beta || gamma->numel() != channels || beta->numel() != channels) return r;
  for (int64_t c = 0; c < channels; ++c)
    r[c] = std::max(0.0, double(beta->data<float>()[c]) + 3 * std::abs(gamma->data<float>()[c]));
  return r;
}

// Worst per-channel SQNR loss (dB) of a per-tensor activation grid when channel c of the Relu
// output is divided by k_c (see the header).
double activationSqnrLoss(const std::vector<double>& range, const std::vector<double>& k) {
  double max_r = 0, max_rk = 0;
  for (size_t c = 0; c < k.size(); ++c) {
    max_r = std::max(max_r, range[c]);
    max_rk = std::max(max_rk, range[c] / k[c]);
  }
  if (max_r <= 0) return 0;
  double worst = -std::numeric_limits<double>::infinity();
  for (size_t c = 0; c < k.size(); ++c)
    if (range[c] > 1e-6 * max_r) worst = std::max(worst, 20 * std::log10(k[c] * max_rk / max_r));
  return std::max(worst, 0.0);
}

Tensor channelVector(const std::vector<double>& v, size_t rank) {
  Shape shape(std::max<size_t>(rank, 2) - 1, 1);
  shape[0] = int64_t(v.size());
  std::vector<float> f(v.begin(), v.end());
  return Tensor::fromVector<float>(shape, f);
}

}  // namespace

double forwardFoldWeightSqnrLoss(const Node& layer, const std::vector<double>& k, int weight_bits,
                                 bool per_channel) {
  const Tensor* w = constantFloat32(layer.input(1));
  if (w == nullptr) return 0;
  const auto wd = w->data<float>();
  const double qmax = double((1 << (weight_bits - 1)) - 1);
  const int64_t outs = per_channel ? outputChannels(layer, *w) : 1;
  std::vector<double> amax(outs, 0), amax_k(outs, 0), signal(outs, 0), noise(outs, 0),
      noise_k(outs, 0);
  forEachWeight(layer, *w, [&](int64_t o, int64_t c, int64_t i) {
    o = per_channel ? o : 0;
    amax[o] = std::max(amax[o], std::abs(double(wd[i])));
    amax_k[o] = std::max(amax_k[o], std::abs(wd[i] * k[c]));
  });
  auto roundingError = [&](double v, double amax_o) {
    if (amax_o <= 0) return 0.0;
    const double s = amax_o / qmax;
    return v - s * std::clamp(std::nearbyint(v / s), -qmax, qmax);
  };
  forEachWeight(layer, *w, [&](int64_t o, int64_t c, int64_t i) {
    o = per_channel ? o : 0;
    const double v = wd[i];
    signal[o] += v * v;
    noise[o] += std::pow(roundingError(v, amax[o]), 2);
    noise_k[o] += std::pow(roundingError(v * k[c], amax_k[o]) / k[c], 2);
  });
  double worst = 0;
  for (int64_t o = 0; o < outs; ++o) {
    if (signal[o] <= 0) continue;
    // A floor far below any float32 rounding error keeps exact grids finite.
    const double floor = signal[o] * 1e-14;
    worst = std::max(worst, 10 * std::log10((noise_k[o] + floor) / (noise[o] + floor)));
  }
  return worst;
}

StatusOr<std::vector<FoldedBatchNorm>> foldRemainingBatchNorms(Graph& graph, bool into_next_layer) {
  RemainingBatchNormOptions options;
  options.into_next_layer = into_next_layer;
  options.max_sqnr_loss_db = std::numeric_limits<double>::infinity();
  return foldRemainingBatchNorms(graph, options);
}

StatusOr<std::vector<FoldedBatchNorm>> foldRemainingBatchNorms(
    Graph& graph, const RemainingBatchNormOptions& options) {
  const bool into_next_layer = options.into_next_layer;
  std::vector<FoldedBatchNorm> done;
  std::vector<Node*> bns;
  for (const auto& n : graph.nodes())
    if (n->isOp("BatchNormalization")) bns.push_back(n.get());
  for (Node* bn : bns) {
    const Value* x = bn->input(0);
    if (bn->output(0)->isGraphOutput()) continue;  // its name is the model's output name
    const auto& shape = x ? x->type().shape : std::nullopt;
    if (!shape || shape->size() < 2) continue;
    const auto affine = batchNormAffine(*bn);
    if (!affine) continue;
    const int64_t channels = affine->channels();
    const auto& d1 = (*shape)[1];
    if (d1.isKnown() && d1.value != channels) continue;
    const std::string name = displayName(*bn);
    bool positive = true;
    std::vector<double> add(channels);
    for (int64_t c = 0; c < channels; ++c) {
      positive = positive && affine->scale[c] > 1e-12;
      add[c] = positive ? affine->shift[c] / affine->scale[c] : 0;
      positive = positive && std::isfinite(add[c]);
    }
    Node* layer = positive && into_next_layer ? layerAfterRelu(*bn, channels) : nullptr;
    FoldedBatchNorm record{name, "Mul/Add", layer ? displayName(*layer) : "", 0, 0};
    if (layer != nullptr && std::isfinite(options.max_sqnr_loss_db)) {
      record.weight_sqnr_lost_db = forwardFoldWeightSqnrLoss(
          *layer, affine->scale, options.weight_bits, options.per_channel_weights);
      if (options.quantized_activations)
        record.act_sqnr_lost_db = activationSqnrLoss(reluRanges(*bn, channels), affine->scale);
      const bool keeps_grids = record.weight_sqnr_lost_db <= options.max_sqnr_loss_db &&
                               record.act_sqnr_lost_db <= options.max_sqnr_loss_db;
      spdlog::debug(
          "BatchNormalization {}: folding it forward into {} costs {:.1f} dB weight SQNR, {:.1f} "
          "dB activation SQNR (worst channel; limit {:.1f}): {}",
          name, record.next_layer, record.weight_sqnr_lost_db, record.act_sqnr_lost_db,
          options.max_sqnr_loss_db, keeps_grids ? "folded" : "kept as a float Mul/Add");
      if (!keeps_grids) layer = nullptr;
    }
    Value* y = bn->output(0);
    Value* result;
    if (layer != nullptr) {
      scaleInputChannels(graph, *layer, affine->scale);
      Value* b = graph.addInitializer(name + "_shift", channelVector(add, shape->size()));
      Node* a = graph.insertNodeBefore(bn, "Add", {bn->input(0), b}, {y->name() + "_a"});
      result = a->output(0);
      record.into = displayName(*layer);
      done.push_back(record);
    } else {
      Value* k = graph.addInitializer(name + "_k", channelVector(affine->scale, shape->size()));
      Value* b = graph.addInitializer(name + "_b", channelVector(affine->shift, shape->size()));
      Node* mul = graph.insertNodeBefore(bn, "Mul", {bn->input(0), k}, {y->name() + "_m"});
      mul->output(0)->setType(y->type());
      Node* a = graph.insertNodeBefore(bn, "Add", {mul->output(0), b}, {y->name() + "_a"});
      result = a->output(0);
      done.push_back(record);
    }
    result->setType(y->type());
    graph.replaceAllUsesWith(y, result);
    std::vector<Value*> params(bn->inputs().begin() + 1, bn->inputs().end());
    graph.eraseNode(bn);
    for (Value* v : params)
      if (v && v->isInitializer() && !v->hasUses() && !v->isGraphInput()) graph.eraseValue(v);
  }
  graph.removeDeadNodes();
  return done;
}

StatusOr<bool> FoldBatchNormPass::run(Model& model) {
  NNC_ASSIGN_OR_RETURN(auto folded, foldBatchNorms(*model.graph));
  return !folded.empty();
}

}  // namespace nnc::quant
