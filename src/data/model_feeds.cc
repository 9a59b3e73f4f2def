// Feeds for models with several inputs or integer inputs (token ids, attention masks): one reader
// per input, each converted to the type the input declares.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "nncompress/data/dataset.h"

namespace nnc::data {
namespace {

// Element i of `t` as an integer, or nullopt when it is not one (fractions, NaN, beyond int64).
std::optional<int64_t> integerAt(const Tensor& t, int64_t i) {
  const char* p = t.bytes().data() + i * (dtypeBits(t.dtype()) / 8);
  auto as = [&](auto v) {
    std::memcpy(&v, p, sizeof v);
    return v;
  };
  auto fromFloat = [](double v) -> std::optional<int64_t> {
    if (!(std::abs(v) < 9.2e18) || v != std::floor(v)) return std::nullopt;
    return static_cast<int64_t>(v);
  };
  switch (t.dtype()) {
    case DType::kBool:
    case DType::kUInt8:
      return as(uint8_t{});
    case DType::kInt8:
      return as(int8_t{});
    case DType::kUInt16:
      return as(uint16_t{});
    case DType::kInt16:
      return as(int16_t{});
    case DType::kUInt32:
      return as(uint32_t{});
    case DType::kInt32:
      return as(int32_t{});
    case DType::kInt64:
      return as(int64_t{});
    case DType::kUInt64: {
      const uint64_t v = as(uint64_t{});
      if (v > uint64_t(std::numeric_limits<int64_t>::max())) return std::nullopt;
      return static_cast<int64_t>(v);
    }
    case DType::kFloat32:
      return fromFloat(as(float{}));
    case DType::kFloat64:
      return fromFloat(as(double{}));
    default:
      return std::nullopt;
  }
}

template <typename T>
bool fits(int64_t v) {
  return v >= int64_t(std::numeric_limits<T>::min()) &&
         (v < 0 || uint64_t(v) <= uint64_t(std::numeric_limits<T>::max()));
}

bool fitsType(int64_t v, DType to) {
  switch (to) {
    case DType::kBool:
      return v == 0 || v == 1;
    case DType::kUInt8:
      return fits<uint8_t>(v);
    case DType::kInt8:
      return fits<int8_t>(v);
    case DType::kUInt16:
      return fits<uint16_t>(v);
    case DType::kInt16:
      return fits<int16_t>(v);
    case DType::kUInt32:
      return fits<uint32_t>(v);
    case DType::kInt32:
      return fits<int32_t>(v);
    case DType::kUInt64:
      return v >= 0;
    case DType::kInt64:
      return true;
    default:
      return false;
  }
}

// `stored` as integers of type `to`, exactly; the first sample holding a value that does not fit
// is named (first_sample numbers the batch's samples in the data).
StatusOr<Tensor> toIntegers(const Tensor& stored, DType to, const std::string& input,
                            int64_t first_sample) {
  Tensor out(to, stored.shape());
  const int width = dtypeBits(to) / 8;
  const int64_t per_sample = stored.rank() > 0 && stored.dim(0) > 0
                                 ? stored.numel() / stored.dim(0)
                                 : std::max<int64_t>(1, stored.numel());
  char* dst = out.mutableBytes().data();
  for (int64_t i = 0; i < stored.numel(); ++i) {
    const std::optional<int64_t> v = integerAt(stored, i);
    if (!v || !fitsType(*v, to)) {
      return invalidArgument("input '" + input + "' takes " + dtypeName(to) + " but sample " +
                             std::to_string(first_sample + i / per_sample) + " holds a " +
                             dtypeName(stored.dtype()) + " value that " + dtypeName(to) +
                             " cannot hold exactly");
    }
    std::memcpy(dst + i * width, &*v, width);  // little-endian: the low bytes
  }
  return out;
}

// The preprocessed float32 samples for a float64 input.
Tensor toDouble(const Tensor& x) {
  Tensor out(DType::kFloat64, x.shape());
  std::copy(x.data<float>().begin(), x.data<float>().end(), out.mutableData<double>().begin());
  return out;
}

class ModelFeedReader : public SampleReader {
 public:
  ModelFeedReader(std::vector<FeedInput> inputs, std::vector<std::unique_ptr<SampleReader>> readers)
      : inputs_(std::move(inputs)), readers_(std::move(readers)) {}

  int64_t size() const override { return readers_.front()->size(); }
  Shape sampleShape() const override { return readers_.front()->sampleShape(); }
  std::optional<std::vector<int64_t>> labels() const override { return readers_.front()->labels(); }
  std::vector<std::string> classNames() const override { return readers_.front()->classNames(); }
  std::string description() const override {
    std::string d;
    for (size_t i = 0; i < inputs_.size(); ++i)
      d += (i ? "; " : "") + inputs_[i].name + ": " + readers_[i]->description();
    return d;
  }

  StatusOr<Tensor> readBatch(int64_t start, int64_t count) override {
    if (inputs_.size() != 1)
      return unsupported("the data feeds " + std::to_string(inputs_.size()) +
                         " model inputs, not one");
    NNC_ASSIGN_OR_RETURN(std::vector<Tensor> feeds, readFeeds(start, count));
    return std::move(feeds.front());
  }

  StatusOr<std::vector<Tensor>> readFeeds(int64_t start, int64_t count) override {
    std::vector<Tensor> feeds;
    for (size_t i = 0; i < inputs_.size(); ++i) {
      const FeedInput& in = inputs_[i];
      if (in.dtype == DType::kFloat32 || in.dtype == DType::kFloat64) {
        NNC_ASSIGN_OR_RETURN(Tensor x, readers_[i]->readBatch(start, count));
        feeds.push_back(in.dtype == DType::kFloat32 ? std::move(x) : toDouble(x));
        continue;
      }
      NNC_ASSIGN_OR_RETURN(Tensor stored, readers_[i]->readStored(start, count));
      NNC_ASSIGN_OR_RETURN(Tensor x, toIntegers(stored, in.dtype, in.name, start));
      feeds.push_back(std::move(x));
    }
    return feeds;
  }

 private:
  std::vector<FeedInput> inputs_;
  std::vector<std::unique_ptr<SampleReader>> readers_;
};

bool isFeedableType(DType t) {
  return t == DType::kFloat32 || t == DType::kFloat64 || isInteger(t) || t == DType::kBool;
}

}  // namespace

StatusOr<std::unique_ptr<SampleReader>> feedModelInputs(
    std::vector<FeedInput> inputs, std::vector<std::unique_ptr<SampleReader>> readers) {
  if (inputs.empty() || inputs.size() != readers.size())
    return invalidArgument("the data gives " + std::to_string(readers.size()) +
                           " sample sets for " + std::to_string(inputs.size()) + " model inputs");
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!isFeedableType(inputs[i].dtype))
      return unsupported("model input '" + inputs[i].name + "' is " + dtypeName(inputs[i].dtype) +
                         "; the data feeds float32, float64, integer and bool inputs");
    if (readers[i]->size() != readers[0]->size())
      return invalidArgument("input '" + inputs[i].name + "' has " +
                             std::to_string(readers[i]->size()) + " samples but '" +
                             inputs[0].name + "' has " + std::to_string(readers[0]->size()) +
                             " (every input needs one per sample)");
  }
  return std::unique_ptr<SampleReader>(new ModelFeedReader(std::move(inputs), std::move(readers)));
}

}  // namespace nnc::data
