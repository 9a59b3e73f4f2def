#pragma once
// Dataset readers: one SPEC (a path) -> a stream of float32 NCHW batches, plus integer labels.
// The format is recognised from the content (magic bytes), not the file name:
//   IDX (MNIST, Fashion-MNIST; gzip too), .npy (v1-v3, C order; gzip too), a folder of ONNX
//   TensorProto .pb files (test_data_set layout), a folder of images (PNG, JPEG, BMP, GIF, PNM;
//   optionally one subfolder per class), or a single image or TensorProto file.
// Errors name the file and the problem: kIoError when a file is missing or unreadable,
// kInvalidArgument when the content is not a recognised format or shapes do not fit together.
// See docs/data-spec.md.

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nncompress/data/preprocess.h"
#include "nncompress/ir/status.h"
#include "nncompress/ir/tensor.h"

namespace nnc::data {

// One dataset. Batches are read on demand (images are decoded per batch), so memory stays
// bounded for large folders. Not thread-safe: use one reader per thread.
class SampleReader {
 public:
  virtual ~SampleReader() = default;
  // Number of samples, known when the reader is opened.
  virtual int64_t size() const = 0;
  // Shape of one preprocessed sample, e.g. {1, 28, 28}.
  virtual Shape sampleShape() const = 0;
  // float32 tensor [count, ...sampleShape()] of samples start .. start+count-1.
  virtual StatusOr<Tensor> readBatch(int64_t start, int64_t count) = 0;
  // Labels that come with the data: the class index of each image in a folder with one
  // subfolder per class (classes sorted by name). nullopt for other formats.
  virtual std::optional<std::vector<int64_t>> labels() const { return std::nullopt; }
  // Class names, in label order, when labels() comes from class subfolders.
  virtual std::vector<std::string> classNames() const { return {}; }
  // One line for logs, e.g. "IDX uint8 10000 x [1,28,28] (gzip)".
  virtual std::string description() const = 0;
  // Samples start .. start+count-1 in their stored element type, without preprocessing (token
  // ids and masks, which scaling would corrupt). kUnsupported for data that is decoded (images).
  virtual StatusOr<Tensor> readStored(int64_t start, int64_t count);
  // What a model run takes for samples start .. start+count-1: one tensor per model input, in
  // the model's input order. A reader of one dataset feeds one input: {readBatch(start, count)}.
  virtual StatusOr<std::vector<Tensor>> readFeeds(int64_t start, int64_t count);
  // The most samples one model run takes from this reader: 1 for a model input without a batch
  // axis (unbatchedReader), else no limit beyond the model's own.
  virtual int64_t maxBatch() const { return std::numeric_limits<int64_t>::max(); }
};

// For a model whose input has no batch axis (torchvision detection exports take one [3, H, W]
// image): batches of exactly one sample, read without the leading axis. maxBatch() is 1.
std::unique_ptr<SampleReader> unbatchedReader(std::unique_ptr<SampleReader> inner);

// A model input the data feeds: a graph input that is not an initializer.
struct FeedInput {
  std::string name;
  DType dtype = DType::kFloat32;
};

// Feeds for a model with several inputs, or with integer inputs, from one reader per input (in
// the order of `inputs`, all with the same number of samples). A float32 or float64 input takes
// readBatch (preprocessed; widened for float64); an integer or bool input takes readStored,
// converted exactly (kInvalidArgument naming the input and the sample when a value is not integral
// or does not fit its type). readBatch of the result is the one feed of a one-input model
// (kUnsupported with several).
StatusOr<std::unique_ptr<SampleReader>> feedModelInputs(
    std::vector<FeedInput> inputs, std::vector<std::unique_ptr<SampleReader>> readers);

// How a folder of images is read: one subfolder per class (the labels), or every image under it,
// recursively, as unlabelled samples (calibration data: subfolders are just folders there, and
// images may sit at any depth).
enum class FolderLayout { kClassSubfolders, kUnlabelled };

StatusOr<std::unique_ptr<SampleReader>> openData(
    const std::string& spec, const Preprocess& preprocess = {},
    FolderLayout layout = FolderLayout::kClassSubfolders);

// A slice of a dataset, samples [begin, end): `--data-range A:B` (validation images held out of
// the training set, e.g. 50000:60000). end < 0: to the last sample.
struct DataRange {
  int64_t begin = 0;
  int64_t end = -1;
};
// Parses "A:B", "A:" (to the end) or ":B" (from 0), with 0 <= A < B; kInvalidArgument otherwise.
StatusOr<DataRange> parseDataRange(const std::string& text);
// Samples [range.begin, range.end) of `reader`, numbered from 0 (its labels() too).
// kInvalidArgument when the range does not fit in the reader's samples.
StatusOr<std::unique_ptr<SampleReader>> sliceData(std::unique_ptr<SampleReader> reader,
                                                  const DataRange& range);
// The same slice of a label list (kInvalidArgument when it does not fit).
StatusOr<std::vector<int64_t>> sliceLabels(const std::vector<int64_t>& labels,
                                           const DataRange& range);

// Integer labels from an IDX file (gzip too), a .npy or TensorProto .pb of integers (shape [N]
// or [N, 1]), a text file with one integer per line, or an image folder with class subfolders.
StatusOr<std::vector<int64_t>> readLabels(const std::string& spec);

}  // namespace nnc::data
