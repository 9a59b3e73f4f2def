#include "nncompress/train/softmax_heads.h"

#include <algorithm>
#include <vector>

namespace nnc::train {

Node* lastAxisSoftmax(const Model& model, const Value* output) {
  Node* n = output->producer();
  if (!n || !(n->isOp("Softmax") || n->isOp("LogSoftmax")) || n->numInputs() != 1) return nullptr;
  // The rank from the output's type, else the input's (the two are the same).
  const Value* x = n->input(0);
  const auto& shape = output->type().shape ? output->type().shape : x->type().shape;
  if (output->dtype() != DType::kFloat32 || !shape) return nullptr;
  const auto rank = static_cast<int64_t>(shape->size());
  const int64_t fallback = model.opsetVersion() < 13 ? 1 : -1;
  int64_t axis = n->intAttr("axis", fallback);
  if (axis < 0) axis += rank;
  return rank >= 2 && axis == rank - 1 ? n : nullptr;
}

int exposeSoftmaxLogits(Model& model) {
  Graph& g = *model.graph;
  std::vector<Node*> heads;
  for (const Value* out : g.outputs()) {
    Node* n = lastAxisSoftmax(model, out);
    if (!n) return 0;
    heads.push_back(n);
  }
  for (size_t i = 0; i < heads.size(); ++i) g.setOutput(i, heads[i]->input(0));
  for (size_t i = 0; i < heads.size(); ++i) {
    Node* n = heads[i];
    const bool seen = std::find(heads.begin(), heads.begin() + i, n) != heads.begin() + i;
    if (!seen && !n->output()->hasUses() && !g.isOutput(n->output())) g.eraseNode(n);
  }
  return static_cast<int>(heads.size());
}

void copyInitializers(const Model& from, Model& to) {
  for (Value* v : to.graph->initializers()) {
    const Value* src = from.graph->findValue(v->name());
    if (!src || !src->isInitializer() || v->dtype() != DType::kFloat32) continue;
    const Tensor& t = *src->initializer();
    if (t.dtype() == DType::kFloat32 && t.shape() == v->initializer()->shape())
      *v->mutableInitializer() = t;
  }
}

}  // namespace nnc::train
