#include "nncompress/quant/bn_fold.h"

#include <spdlog/spdlog.h>

#include <cmath>

namespace nnc::quant {
namespace {

const Tensor* constFloat(const Value* v) {
  if (v == nullptr) return nullptr;
  const Tensor* t = v->constantData();
  return t != nullptr && t->dtype() == DType::kFloat32 ? t : nullptr;
}

std::string displayName(const Node& n) { return n.name().empty() ? n.output(0)->name() : n.name(); }

// Checks the pattern and returns the number of output channels of `layer`, or -1 when the BN
// cannot be folded into it.
int64_t foldableChannels(const Node& layer, const Node& bn) {
  const Value* z = layer.output(0);
  if (layer.numOutputs() != 1 || z->uses().size() != 1 || z->isGraphOutput()) return -1;
  if (bn.input(0) != z || bn.output(0)->isGraphOutput()) return -1;
  for (size_t i = 1; i < bn.numOutputs(); ++i)
    if (bn.output(i) != nullptr && (bn.output(i)->hasUses() || bn.output(i)->isGraphOutput()))
      return -1;
  if (bn.intAttr("training_mode", 0) != 0) return -1;
  const Tensor* w = constFloat(layer.input(1));
  if (w == nullptr) return -1;
  if (layer.input(2) != nullptr && constFloat(layer.input(2)) == nullptr) return -1;
  int64_t channels = -1;
  if (layer.isOp("Conv")) {
    if (w->rank() < 3) return -1;
    channels = w->dim(0);
  } else if (layer.isOp("ConvTranspose")) {
    if (w->rank() < 3) return -1;
    channels = w->dim(1) * layer.intAttr("group", 1);
  } else if (layer.isOp("Gemm")) {
    if (w->rank() != 2 || layer.intAttr("transA", 0) != 0) return -1;
    channels = layer.intAttr("transB", 0) ? w->dim(0) : w->dim(1);
    if (const Tensor* c = constFloat(layer.input(2));
        c && c->numel() != 1 && c->numel() != channels)
      return -1;
  } else {
    return -1;
  }
  for (int i = 1; i <= 4; ++i) {
    const Tensor* p = constFloat(bn.input(i));
    if (p == nullptr || p->numel() != channels) return -1;
  }
  return channels;
}

void foldInto(Graph& graph, Node& layer, Node& bn, int64_t channels) {
  const auto gamma = constFloat(bn.input(1))->data<float>();
  const auto beta = constFloat(bn.input(2))->data<float>();
  const auto mean = constFloat(bn.input(3))->data<float>();
  const auto var = constFloat(bn.input(4))->data<float>();
  const double eps = bn.floatAttr("epsilon", 1e-5f);
  std::vector<double> k(channels);
  for (int64_t c = 0; c < channels; ++c) k[c] = gamma[c] / std::sqrt(double(var[c]) + eps);

  Tensor w = *constFloat(layer.input(1));
  auto wd = w.mutableData<float>();
  if (layer.isOp("Conv")) {
    const int64_t per = w.numel() / channels;
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t i = 0; i < per; ++i) wd[c * per + i] = float(wd[c * per + i] * k[c]);
  } else if (layer.isOp("ConvTranspose")) {
    const int64_t groups = layer.intAttr("group", 1);
    const int64_t cin = w.dim(0), cout_g = w.dim(1), spatial = w.numel() / (cin * cout_g);
    for (int64_t i = 0; i < cin; ++i) {
      const int64_t g = i / (cin / groups);
      for (int64_t j = 0; j < cout_g; ++j)
        for (int64_t s = 0; s < spatial; ++s) {
          float& x = wd[(i * cout_g + j) * spatial + s];
          x = float(x * k[g * cout_g + j]);
        }
    }
  } else {  // Gemm
    const bool trans_b = layer.intAttr("transB", 0) != 0;
    for (int64_t r = 0; r < w.dim(0); ++r)
      for (int64_t c = 0; c < w.dim(1); ++c) {
        float& x = wd[r * w.dim(1) + c];
        x = float(x * k[trans_b ? r : c]);
      }
  }
  std::vector<float> bias(channels, 0.f);
  if (const Tensor* b = constFloat(layer.input(2))) {
    const auto bd = b->data<float>();
    const double scale = layer.isOp("Gemm") ? layer.floatAttr("beta", 1.f) : 1.0;
    for (int64_t c = 0; c < channels; ++c) bias[c] = float(scale * bd[b->numel() == 1 ? 0 : c]);
  }
  for (int64_t c = 0; c < channels; ++c) bias[c] = float(k[c] * (bias[c] - mean[c]) + beta[c]);
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

StatusOr<bool> FoldBatchNormPass::run(Model& model) {
  NNC_ASSIGN_OR_RETURN(auto folded, foldBatchNorms(*model.graph));
  return !folded.empty();
}

}  // namespace nnc::quant
