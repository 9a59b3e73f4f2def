// Keeps layers that stay float from being quantized by ONNX Runtime (quantize_internal.h).

#include <spdlog/spdlog.h>

#include "nncompress/ir/batch_norm.h"
#include "quantize_internal.h"

namespace nnc::quant {
namespace {

// Channels along axis 1 of a float layer's data input, or -1 when the layer is not one ORT's
// rewrite matches (Conv, ConvTranspose, Gemm without transA, float32 initializer weight).
int64_t guardedChannels(const Node& n) {
  const Value* w = n.numInputs() > 1 ? n.input(1) : nullptr;
  if (w == nullptr || !w->isInitializer() || constantFloat32(w) == nullptr) return -1;
  const Tensor& t = *constantFloat32(w);
  if (n.isOp("Conv") && t.rank() >= 3) return t.dim(1) * n.intAttr("group", 1);
  if (n.isOp("ConvTranspose") && t.rank() >= 3) return t.dim(0);
  if (n.isOp("Gemm") && t.rank() == 2 && n.intAttr("transA", 0) == 0)
    return n.intAttr("transB", 0) ? t.dim(1) : t.dim(0);
  return -1;
}

// `scalar` (one element of any 1-byte type) repeated `channels` times.
std::optional<Tensor> repeated(const Tensor& scalar, int64_t channels) {
  if (scalar.numel() != 1) return std::nullopt;
  if (scalar.dtype() == DType::kFloat32)
    return Tensor::fromVector<float>({channels},
                                     std::vector<float>(channels, scalar.data<float>()[0]));
  if (scalar.dtype() != DType::kUInt8 && scalar.dtype() != DType::kInt8) return std::nullopt;
  Tensor t(scalar.dtype(), {channels});
  auto d = t.mutableData<uint8_t>();
  std::fill(d.begin(), d.end(), scalar.data<uint8_t>()[0]);
  return t;
}

}  // namespace

int guardFloatLayersFromOrtWeightQuantization(Graph& g) {
  int guarded = 0;
  std::vector<Node*> nodes;
  for (const auto& n : g.nodes()) nodes.push_back(n.get());
  for (Node* n : nodes) {
    const int64_t channels = guardedChannels(*n);
    Node* dq = n->input(0) ? n->input(0)->producer() : nullptr;
    if (channels <= 0 || dq == nullptr || !dq->isOp("DequantizeLinear") || dq->numInputs() < 3)
      continue;
    const Value* s = dq->input(1);
    const Value* z = dq->input(2);
    if (!s->isInitializer() || z == nullptr || !z->isInitializer()) continue;
    auto scales = repeated(*s->initializer(), channels);
    auto zeros = repeated(*z->initializer(), channels);
    if (!scales || !zeros) continue;
    const std::string base = n->input(0)->name() + "_pc";
    Node* own = g.insertNodeBefore(n, "DequantizeLinear",
                                   {dq->input(0), g.addInitializer(base + "_s", std::move(*scales)),
                                    g.addInitializer(base + "_z", std::move(*zeros))},
                                   {base});
    own->setAttribute(Attribute::makeInt("axis", 1));
    own->output(0)->setType(n->input(0)->type());
    n->setInput(0, own->output(0));
    ++guarded;
  }
  if (guarded > 0)
    spdlog::debug(
        "{} float layers read a quantized tensor through a per-channel DequantizeLinear (so "
        "ONNX Runtime keeps them float)",
        guarded);
  return guarded;
}

}  // namespace nnc::quant
