#include <cmath>
#include <limits>

#include "nncompress/exec/executor.h"
#include "nncompress/quant/quantize.h"

namespace nnc::quant {

StatusOr<std::map<std::string, double>> measureSqnr(const Model& reference, const Model& quantized,
                                                    data::SampleReader& reader,
                                                    const std::vector<ValuePair>& values,
                                                    int64_t limit, int64_t batch, int threads) {
  exec::ExecutorOptions eo;
  eo.num_threads = threads;
  NNC_ASSIGN_OR_RETURN(auto ref, exec::Executor::create(reference, eo));
  NNC_ASSIGN_OR_RETURN(auto quant, exec::Executor::create(quantized, eo));
  std::map<std::string, std::string> wanted, reference_of;  // reference name -> quantized name
  for (const auto& [r, q] : values) wanted[r] = q, reference_of[q] = r;
  std::map<std::string, std::pair<double, double>> energy;  // signal, noise
  std::map<std::string, Tensor> ref_batch;
  const int64_t total = std::min(limit < 0 ? reader.size() : limit, reader.size());
  for (int64_t start = 0; start < total; start += batch) {
    const int64_t count = std::min(batch, total - start);
    NNC_ASSIGN_OR_RETURN(std::vector<Tensor> feeds, reader.readFeeds(start, count));
    std::vector<Tensor> qfeeds = feeds;  // shares the bytes
    ref_batch.clear();
    NNC_ASSIGN_OR_RETURN(auto r_out,
                         ref->run(std::move(feeds), [&](const Value& v, const Tensor& t) {
                           if (wanted.count(v.name()) && t.dtype() == DType::kFloat32)
                             ref_batch[v.name()] = t;
                         }));
    (void)r_out;
    NNC_ASSIGN_OR_RETURN(auto q_out, quant->run(std::move(qfeeds), [&](const Value& v,
                                                                       const Tensor& t) {
      auto ref_name = reference_of.find(v.name());
      if (ref_name == reference_of.end()) return;
      auto it = ref_batch.find(ref_name->second);
      if (it == ref_batch.end() || t.dtype() != DType::kFloat32 || t.numel() != it->second.numel())
        return;
      auto& [signal, noise] = energy[ref_name->second];
      const auto a = it->second.data<float>(), b = t.data<float>();
      for (size_t i = 0; i < a.size(); ++i) {
        signal += double(a[i]) * a[i];
        noise += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
      }
    }));
    (void)q_out;
  }
  std::map<std::string, double> sqnr;
  for (const auto& [name, e] : energy)
    sqnr[name] = e.second > 0 ? 10 * std::log10(e.first / e.second)
                              : std::numeric_limits<double>::infinity();
  return sqnr;
}

}  // namespace nnc::quant
