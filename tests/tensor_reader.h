#pragma once
// Samples held in memory, for hand-built graphs: a data::SampleReader over one [N, ...] tensor.

#include <algorithm>
#include <string>

#include "nncompress/data/dataset.h"

namespace nnc::testing {

class TensorReader : public data::SampleReader {
 public:
  explicit TensorReader(Tensor all) : all_(std::move(all)) {}
  int64_t size() const override { return all_.dim(0); }
  Shape sampleShape() const override { return Shape(all_.shape().begin() + 1, all_.shape().end()); }
  StatusOr<Tensor> readBatch(int64_t start, int64_t count) override {
    Shape s = all_.shape();
    s[0] = count;
    Tensor t(DType::kFloat32, s);
    const int64_t per = all_.numel() / all_.dim(0);
    std::copy_n(all_.data<float>().data() + start * per, count * per,
                t.mutableData<float>().data());
    return t;
  }
  std::string description() const override { return "in-memory"; }

 private:
  Tensor all_;
};

}  // namespace nnc::testing
