// One sample per run, without the leading sample axis, for models whose input has no batch axis.
#include "nncompress/data/dataset.h"

namespace nnc::data {
namespace {

class UnbatchedReader : public SampleReader {
 public:
  explicit UnbatchedReader(std::unique_ptr<SampleReader> inner) : inner_(std::move(inner)) {}

  int64_t size() const override { return inner_->size(); }
  Shape sampleShape() const override { return inner_->sampleShape(); }
  StatusOr<Tensor> readBatch(int64_t start, int64_t count) override {
    NNC_RETURN_IF_ERROR(checkOne(count));
    NNC_ASSIGN_OR_RETURN(Tensor batch, inner_->readBatch(start, 1));
    return dropSampleAxis(std::move(batch));
  }
  StatusOr<Tensor> readStored(int64_t start, int64_t count) override {
    NNC_RETURN_IF_ERROR(checkOne(count));
    NNC_ASSIGN_OR_RETURN(Tensor batch, inner_->readStored(start, 1));
    return dropSampleAxis(std::move(batch));
  }
  std::optional<std::vector<int64_t>> labels() const override { return inner_->labels(); }
  std::vector<std::string> classNames() const override { return inner_->classNames(); }
  int64_t maxBatch() const override { return 1; }
  std::string description() const override {
    return inner_->description() + ", one sample per run (the model input has no batch axis)";
  }

 private:
  static Status checkOne(int64_t count) {
    if (count == 1) return Status::ok();
    return invalidArgument("the model input has no batch axis: it takes one sample per run, not " +
                           std::to_string(count));
  }
  static StatusOr<Tensor> dropSampleAxis(Tensor batch) {
    Shape sample(batch.shape().begin() + 1, batch.shape().end());
    return Tensor::fromBytes(batch.dtype(), std::move(sample), batch.releaseBytes());
  }

  std::unique_ptr<SampleReader> inner_;
};

}  // namespace

std::unique_ptr<SampleReader> unbatchedReader(std::unique_ptr<SampleReader> inner) {
  return std::make_unique<UnbatchedReader>(std::move(inner));
}

}  // namespace nnc::data
