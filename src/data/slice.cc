// --data-range: a SampleReader over a contiguous slice of another, so decisions can be made on
// held-out training images (e.g. the last 10k of 60k) and never on the test set.
#include <charconv>

#include "nncompress/data/dataset.h"

namespace nnc::data {
namespace {

class SliceReader : public SampleReader {
 public:
  SliceReader(std::unique_ptr<SampleReader> inner, int64_t begin, int64_t end)
      : inner_(std::move(inner)), begin_(begin), end_(end) {}

  int64_t size() const override { return end_ - begin_; }
  Shape sampleShape() const override { return inner_->sampleShape(); }
  StatusOr<Tensor> readBatch(int64_t start, int64_t count) override {
    NNC_RETURN_IF_ERROR(check(start, count));
    return inner_->readBatch(begin_ + start, count);
  }
  StatusOr<Tensor> readStored(int64_t start, int64_t count) override {
    NNC_RETURN_IF_ERROR(check(start, count));
    return inner_->readStored(begin_ + start, count);
  }
  StatusOr<std::vector<Tensor>> readFeeds(int64_t start, int64_t count) override {
    NNC_RETURN_IF_ERROR(check(start, count));
    return inner_->readFeeds(begin_ + start, count);
  }
  std::optional<std::vector<int64_t>> labels() const override {
    auto all = inner_->labels();
    if (!all) return std::nullopt;
    return std::vector<int64_t>(all->begin() + begin_, all->begin() + end_);
  }
  std::vector<std::string> classNames() const override { return inner_->classNames(); }
  int64_t maxBatch() const override { return inner_->maxBatch(); }
  std::string description() const override {
    return inner_->description() + ", range " + std::to_string(begin_) + ":" +
           std::to_string(end_) + " (" + std::to_string(size()) + " samples)";
  }

 private:
  Status check(int64_t start, int64_t count) const {
    if (start < 0 || count < 0 || start > size() || count > size() - start) {
      return invalidArgument("batch [" + std::to_string(start) + ", " +
                             std::to_string(start + count) + ") is outside the " +
                             std::to_string(size()) + " samples of the range");
    }
    return Status::ok();
  }

  std::unique_ptr<SampleReader> inner_;
  int64_t begin_, end_;
};

// A non-negative integer filling `text`; nullopt otherwise.
std::optional<int64_t> parseIndex(std::string_view text) {
  int64_t value = 0;
  const auto [ptr, errc] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || errc != std::errc() || ptr != text.data() + text.size() || value < 0)
    return std::nullopt;
  return value;
}

// The range with its end resolved against `size` samples, or why it does not fit.
StatusOr<DataRange> resolve(const DataRange& range, int64_t size, const char* what) {
  const int64_t end = range.end < 0 ? size : range.end;
  if (end > size || range.begin >= end) {
    return invalidArgument("range " + std::to_string(range.begin) + ":" +
                           (range.end < 0 ? std::string() : std::to_string(range.end)) +
                           " does not fit the " + std::to_string(size) + " " + what);
  }
  return DataRange{range.begin, end};
}

}  // namespace

StatusOr<DataRange> parseDataRange(const std::string& text) {
  const size_t colon = text.find(':');
  const auto fail = [&text] {
    return invalidArgument("'" + text +
                           "' is not a range: expected A:B (samples A to B-1, 0 <= A < B), "
                           "A: or :B");
  };
  if (colon == std::string::npos) return fail();
  const std::string_view all(text);
  const std::string_view a = all.substr(0, colon), b = all.substr(colon + 1);
  if (a.empty() && b.empty()) return fail();
  DataRange range;
  if (!a.empty()) {
    const auto begin = parseIndex(a);
    if (!begin) return fail();
    range.begin = *begin;
  }
  if (!b.empty()) {
    const auto end = parseIndex(b);
    if (!end || *end <= range.begin) return fail();
    range.end = *end;
  }
  return range;
}

StatusOr<std::unique_ptr<SampleReader>> sliceData(std::unique_ptr<SampleReader> reader,
                                                  const DataRange& range) {
  NNC_ASSIGN_OR_RETURN(const DataRange r, resolve(range, reader->size(), "samples"));
  if (r.begin == 0 && r.end == reader->size()) return reader;
  return std::unique_ptr<SampleReader>(new SliceReader(std::move(reader), r.begin, r.end));
}

StatusOr<std::vector<int64_t>> sliceLabels(const std::vector<int64_t>& labels,
                                           const DataRange& range) {
  NNC_ASSIGN_OR_RETURN(const DataRange r,
                       resolve(range, static_cast<int64_t>(labels.size()), "labels"));
  return std::vector<int64_t>(labels.begin() + r.begin, labels.begin() + r.end);
}

}  // namespace nnc::data
