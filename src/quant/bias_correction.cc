#include <algorithm>
#include <set>

#include "nncompress/exec/executor.h"
#include "nncompress/ir/batch_norm.h"
#include "nncompress/quant/int32_bias.h"
#include "nncompress/quant/quantize.h"

namespace nnc::quant {
namespace {

// Per-channel (axis 1) sums of a float tensor, added to `sums`; returns elements per channel.
int64_t addChannelSums(const Tensor& t, std::vector<double>& sums) {
  if (t.rank() < 2) return 0;
  const int64_t c = t.dim(1), n = t.dim(0), inner = t.numel() / std::max<int64_t>(1, n * c);
  if (sums.empty()) sums.assign(c, 0.0);
  if (int64_t(sums.size()) != c) return 0;
  const auto d = t.data<float>();
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < c; ++ch) {
      double s = 0;
      const float* p = d.data() + (b * c + ch) * inner;
      for (int64_t i = 0; i < inner; ++i) s += p[i];
      sums[ch] += s;
    }
  return n * inner;
}

// Mean per channel of the named tensors over the first `limit` samples.
StatusOr<std::map<std::string, std::vector<double>>> channelMeans(
    const Model& model, data::SampleReader& reader, const std::set<std::string>& names,
    int64_t limit, int64_t batch, int threads) {
  exec::ExecutorOptions eo;
  eo.num_threads = threads;
  NNC_ASSIGN_OR_RETURN(auto ex, exec::Executor::create(model, eo));
  std::map<std::string, std::vector<double>> sums;
  std::map<std::string, int64_t> counts;
  const int64_t total = std::min(limit, reader.size());
  for (int64_t start = 0; start < total; start += batch) {
    NNC_ASSIGN_OR_RETURN(std::vector<Tensor> feeds,
                         reader.readFeeds(start, std::min(batch, total - start)));
    NNC_ASSIGN_OR_RETURN(auto out, ex->run(std::move(feeds), [&](const Value& v, const Tensor& t) {
      if (names.count(v.name()) && t.dtype() == DType::kFloat32)
        counts[v.name()] += addChannelSums(t, sums[v.name()]);
    }));
    (void)out;
  }
  for (auto& [name, s] : sums)
    for (double& v : s) v /= double(std::max<int64_t>(1, counts[name]));
  return sums;
}

}  // namespace

StatusOr<int> correctBiases(const Model& reference, Model& quantized,
                            const std::vector<QuantizedLayer>& layers, data::SampleReader& reader,
                            int64_t limit, int64_t batch, int threads) {
  batch = std::max<int64_t>(batch, 1);
  std::set<std::string> ref_names;
  for (const auto& l : layers) ref_names.insert(l.output);
  NNC_ASSIGN_OR_RETURN(auto ref_means,
                       channelMeans(reference, reader, ref_names, limit, batch, threads));
  int corrected = 0;
  Graph& g = *quantized.graph;
  for (const QuantizedLayer& l : layers) {  // in graph order: each sees the earlier corrections
    Value* y = g.findValue(l.quantized_output);
    Node* n = y ? y->producer() : nullptr;
    if (n == nullptr || !(n->isOp("Conv") || n->isOp("Gemm"))) continue;  // QOperator: int bias
    auto ref = ref_means.find(l.output);
    if (ref == ref_means.end()) continue;
    NNC_ASSIGN_OR_RETURN(
        auto q_means, channelMeans(quantized, reader, {l.quantized_output}, limit, batch, threads));
    const std::vector<double>& qm = q_means[l.quantized_output];
    const std::vector<double>& rm = ref->second;
    if (qm.size() != rm.size() || rm.empty()) continue;
    const int64_t channels = int64_t(rm.size());
    std::vector<float> bias(channels, 0.f);
    const auto int32_bias = int32BiasValues(*n);  // ort placement: DequantizeLinear(int32)
    if (int32_bias) {
      if (int64_t(int32_bias->size()) != channels) continue;
      bias = *int32_bias;
    } else if (const Tensor* b = constantFloat32(n->input(2))) {
      if (b->numel() != channels && b->numel() != 1) continue;
      for (int64_t c = 0; c < channels; ++c) bias[c] = b->data<float>()[b->numel() == 1 ? 0 : c];
    }
    const double beta = n->isOp("Gemm") ? n->floatAttr("beta", 1.f) : 1.0;
    if (beta == 0) continue;
    for (int64_t c = 0; c < channels; ++c) bias[c] = float(bias[c] + (rm[c] - qm[c]) / beta);
    if (int32_bias) {
      NNC_RETURN_IF_ERROR(setInt32Bias(*n, bias));
      ++corrected;
      continue;
    }
    Value* old_b = n->input(2);
    Value* nb =
        g.addInitializer(l.name + "_B_corrected", Tensor::fromVector<float>({channels}, bias));
    if (n->numInputs() > 2)
      n->setInput(2, nb);
    else
      n->addInput(nb);
    if (old_b && !old_b->hasUses() && old_b->isInitializer() && !old_b->isGraphInput())
      g.eraseValue(old_b);
    ++corrected;
  }
  return corrected;
}

}  // namespace nnc::quant
