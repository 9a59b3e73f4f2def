#pragma once
// The format-specific readers behind openData/readLabels (internal to src/data).

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "byte_source.h"
#include "nncompress/data/dataset.h"
#include "nncompress/ir/tensor.h"

namespace nnc::data::internal {

// Raw samples of one dtype and shape: the rows of an [N, ...] array, read on demand.
class RawRows {
 public:
  virtual ~RawRows() = default;
  virtual DType dtype() const = 0;
  virtual const Shape& sampleShape() const = 0;
  virtual int64_t size() const = 0;
  // Bytes of rows [start, start + count), native byte order, into `out` (resized to fit).
  virtual Status read(int64_t start, int64_t count, std::string& out) = 0;
  // e.g. "IDX uint8 (gzip)".
  virtual std::string description() const = 0;
};

// A SampleReader over raw rows: converts to float and applies the preprocessing.
StatusOr<std::unique_ptr<SampleReader>> openArrayReader(std::unique_ptr<RawRows> rows,
                                                        const Preprocess& preprocess,
                                                        const std::string& source);

// Content sniffing on the first bytes of a file.
bool looksLikeIdx(std::string_view head);
bool looksLikeNpy(std::string_view head);
bool looksLikeImage(std::string_view head);
// Printable ASCII and whitespace only (label files).
bool looksLikeText(std::string_view bytes);

// IDX: big-endian header of magic {0, 0, type, ndim} and ndim uint32 dims. Samples of a 3-D
// file ([N, H, W] images) get a channel axis: [1, H, W].
StatusOr<std::unique_ptr<RawRows>> openIdxRows(std::unique_ptr<ByteSource> source);

struct NpyHeader {
  DType dtype = DType::kUndefined;
  Shape shape;
  bool swap_bytes = false;  // stored in the other byte order
  int64_t data_offset = 0;
};
// Parses and checks the header against the file size.
StatusOr<NpyHeader> readNpyHeader(const ByteSource& source);
StatusOr<std::unique_ptr<RawRows>> openNpyRows(std::unique_ptr<ByteSource> source);

// TensorProto files concatenated along axis 0. All files have the same rank and the same dims
// after axis 0; a file of one rank less is a single sample.
StatusOr<std::unique_ptr<RawRows>> openTensorProtoRows(std::vector<std::string> files,
                                                       const std::string& source);

// Image files: every file in `dir`, or one subfolder per class (kUnlabelled: every image under
// `dir`, recursively, without labels).
StatusOr<std::unique_ptr<SampleReader>> openImageFolder(
    const std::string& dir, const Preprocess& preprocess,
    FolderLayout layout = FolderLayout::kClassSubfolders);
// Class labels of an image folder with one subfolder per class (headers only, any sizes).
StatusOr<std::vector<int64_t>> imageFolderLabels(const std::string& dir);
StatusOr<std::unique_ptr<SampleReader>> openImageFile(const std::string& path,
                                                      const Preprocess& preprocess);

// "input_2.pb" < "input_10.pb".
bool naturalLess(const std::string& a, const std::string& b);

}  // namespace nnc::data::internal
