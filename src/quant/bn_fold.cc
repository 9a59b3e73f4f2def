#include "nncompress/quant/bn_fold.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <optional>

#include "nncompress/ir/batch_norm.h"

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
    if (const Tensor* c = constantFloat32(layer.input(2));
        c && c->numel() != 1 && c->numel() != channels)
      return -1;
  } else {
    return -1;
  }
  return batchNormAffine(bn, channels) ? channels : -1;
}

void foldInto(Graph& graph, Node& layer, Node& bn, int64_t channels) {
  const BatchNormAffine affine = *batchNormAffine(bn, channels);  // checked by foldableChannels
  const std::vector<double>& k = affine.scale;

  Tensor w = *constantFloat32(layer.input(1));
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
    if (next->isOp("Conv") && w->rank() >= 3 && w->dim(1) * next->intAttr("group", 1) == channels)
      return next;
    if (next->isOp("Gemm") && w->rank() == 2 && next->intAttr("transA", 0) == 0 &&
        w->dim(next->intAttr("transB", 0) ? 1 : 0) == channels)
      return next;
    return nullptr;
  }
  return nullptr;
}

// W'[:, c] = k_c W[:, c] along the layer's input-channel axis.
void scaleInputChannels(Graph& graph, Node& layer, const std::vector<double>& k) {
  Tensor w = *constantFloat32(layer.input(1));
  auto wd = w.mutableData<float>();
  if (layer.isOp("Conv")) {
    const int64_t groups = layer.intAttr("group", 1), out = w.dim(0), in_g = w.dim(1);
    const int64_t spatial = w.numel() / (out * in_g), out_g = out / groups;
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in_g; ++i) {
        const double kc = k[(o / out_g) * in_g + i];
        for (int64_t s = 0; s < spatial; ++s) {
          float& x = wd[(o * in_g + i) * spatial + s];
          x = float(x * kc);
        }
      }
  } else {
    const bool trans_b = layer.intAttr("transB", 0) != 0;
    for (int64_t r = 0; r < w.dim(0); ++r)
      for (int64_t c = 0; c < w.dim(1); ++c) {
        float& x = wd[r * w.dim(1) + c];
        x = float(x * k[trans_b ? c : r]);
      }
  }
  Value* old_w = layer.input(1);
  layer.setInput(1, graph.addInitializer(old_w->name() + "_s", std::move(w)));
  if (!old_w->hasUses() && old_w->isInitializer() && !old_w->isGraphInput())
    graph.eraseValue(old_w);
}

Tensor channelVector(const std::vector<double>& v, size_t rank) {
  Shape shape(std::max<size_t>(rank, 2) - 1, 1);
  shape[0] = int64_t(v.size());
  std::vector<float> f(v.begin(), v.end());
  return Tensor::fromVector<float>(shape, f);
}

}  // namespace

StatusOr<std::vector<FoldedBatchNorm>> foldRemainingBatchNorms(Graph& graph, bool into_next_layer) {
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
    Value* y = bn->output(0);
    Value* result;
    if (layer != nullptr) {
      scaleInputChannels(graph, *layer, affine->scale);
      Value* b = graph.addInitializer(name + "_shift", channelVector(add, shape->size()));
      Node* a = graph.insertNodeBefore(bn, "Add", {bn->input(0), b}, {y->name() + "_a"});
      result = a->output(0);
      done.push_back({name, displayName(*layer)});
    } else {
      Value* k = graph.addInitializer(name + "_k", channelVector(affine->scale, shape->size()));
      Value* b = graph.addInitializer(name + "_b", channelVector(affine->shift, shape->size()));
      Node* mul = graph.insertNodeBefore(bn, "Mul", {bn->input(0), k}, {y->name() + "_m"});
      mul->output(0)->setType(y->type());
      Node* a = graph.insertNodeBefore(bn, "Add", {mul->output(0), b}, {y->name() + "_a"});
      result = a->output(0);
      done.push_back({name, "Mul/Add"});
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
