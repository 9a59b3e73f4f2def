// Image datasets: a folder of images (optionally one subfolder per class, classes sorted by
// name, as torchvision's ImageFolder) or a single image. Opening reads only the image headers
// (to check the format and that all images preprocess to one shape); readBatch decodes the
// images of that batch only, so memory stays bounded for large folders.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>

#include "pipeline.h"
#include "readers.h"

// stb_image: implemented in this file only. Only the formats we detect by magic bytes.
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF
#define STBI_ONLY_PNM
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#endif
#include <stb_image.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace nnc::data::internal {
namespace fs = std::filesystem;
namespace {

constexpr const char* kImageFormats = "PNG, JPEG, BMP, GIF or PNM";
// Guards against corrupt headers that would make us allocate gigabytes (a 16k x 8k image).
constexpr int64_t kMaxPixels = int64_t{1} << 27;

struct ImageEntry {
  std::string path;
  int height = 0;
  int width = 0;
  int components = 0;  // in the file: 1 grey, 2 grey+alpha, 3 rgb, 4 rgba
  int64_t label = -1;
};

// Channels we decode: alpha is dropped.
int decodedChannels(int components) { return components <= 2 ? 1 : 3; }

std::string lowerExtension(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext;
}

bool hasImageExtension(const fs::path& path) {
  static const std::set<std::string> kExtensions = {".png", ".jpg", ".jpeg", ".bmp",
                                                    ".gif", ".pgm", ".ppm",  ".pnm"};
  return kExtensions.count(lowerExtension(path)) > 0;
}

// Image formats we do not decode: an error, so that a folder of them is not silently skipped.
bool hasUnsupportedImageExtension(const fs::path& path) {
  static const std::set<std::string> kExtensions = {".tif",  ".tiff", ".webp", ".heic",
                                                    ".avif", ".jxl",  ".jp2",  ".exr"};
  return kExtensions.count(lowerExtension(path)) > 0;
}

// The image's header, nullopt when the file is not an image (by its magic bytes). A file with
// an image extension that is not an image is an error rather than silently skipped.
StatusOr<std::optional<ImageEntry>> probeImage(const fs::path& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return ioError(path.string() + ": cannot open: " + std::strerror(errno));
  char head[16] = {};
  const size_t got = std::fread(head, 1, sizeof(head), file);
  if (!looksLikeImage(std::string_view(head, got))) {
    std::fclose(file);
    if (hasUnsupportedImageExtension(path)) {
      return invalidArgument(path.string() + ": " + path.extension().string().substr(1) +
                             " images are not supported (convert to PNG or JPEG)");
    }
    if (hasImageExtension(path)) {
      return invalidArgument(path.string() + ": named like an image but is not a " + kImageFormats +
                             " image");
    }
    return std::optional<ImageEntry>();
  }
  std::fseek(file, 0, SEEK_SET);
  ImageEntry entry;
  entry.path = path.string();
  const int ok = stbi_info_from_file(file, &entry.width, &entry.height, &entry.components);
  std::fclose(file);
  if (!ok) {
    return invalidArgument(path.string() + ": cannot read the image header (" +
                           stbi_failure_reason() + ")");
  }
  if (static_cast<int64_t>(entry.width) * entry.height > kMaxPixels) {
    return invalidArgument(path.string() + ": the image is " + std::to_string(entry.width) + "x" +
                           std::to_string(entry.height) + " pixels, more than the " +
                           std::to_string(kMaxPixels) + " we decode");
  }
  return std::optional<ImageEntry>(std::move(entry));
}

class ImageReader : public SampleReader {
 public:
  ImageReader(std::string source, std::vector<ImageEntry> entries, std::vector<std::string> classes,
              Plan plan, Shape sample_shape, int64_t skipped)
      : source_(std::move(source)),
        entries_(std::move(entries)),
        classes_(std::move(classes)),
        plan_(std::move(plan)),
        sample_shape_(std::move(sample_shape)),
        skipped_(skipped) {}

  int64_t size() const override { return static_cast<int64_t>(entries_.size()); }
  Shape sampleShape() const override { return sample_shape_; }
  std::optional<std::vector<int64_t>> labels() const override {
    if (classes_.empty()) return std::nullopt;
    std::vector<int64_t> labels;
    labels.reserve(entries_.size());
    for (const ImageEntry& e : entries_) labels.push_back(e.label);
    return labels;
  }
  std::vector<std::string> classNames() const override { return classes_; }
  std::string description() const override {
    std::string d = "images, " + std::to_string(entries_.size()) + " files";
    if (!classes_.empty()) d += " in " + std::to_string(classes_.size()) + " classes";
    if (skipped_ > 0) d += ", " + std::to_string(skipped_) + " non-image files skipped";
    return d;
  }

  StatusOr<Tensor> readBatch(int64_t start, int64_t count) override {
    if (start < 0 || count < 0 || start > size() || count > size() - start) {
      return invalidArgument(source_ + ": batch [" + std::to_string(start) + ", " +
                             std::to_string(start + count) + ") is outside the " +
                             std::to_string(size()) + " samples");
    }
    Shape batch_shape = sample_shape_;
    batch_shape.insert(batch_shape.begin(), count);
    Tensor batch(DType::kFloat32, batch_shape);
    float* out = batch.mutableData<float>().data();
    const int64_t sample_numel = shapeNumel(sample_shape_);
    std::vector<float> sample;
    for (int64_t i = 0; i < count; ++i) {
      const ImageEntry& entry = entries_[static_cast<size_t>(start + i)];
      NNC_RETURN_IF_ERROR(decode(entry, sample));
      const Shape raw = {decodedChannels(entry.components), entry.height, entry.width};
      applyPlan(plan_, raw, sample, out + i * sample_numel);
    }
    return batch;
  }

 private:
  // Decodes to float CHW (values 0..255), alpha dropped.
  Status decode(const ImageEntry& entry, std::vector<float>& chw) {
    NNC_ASSIGN_OR_RETURN(auto file, ByteSource::open(entry.path));
    NNC_ASSIGN_OR_RETURN(std::string bytes, file->readAll());
    const int channels = decodedChannels(entry.components);
    int w = 0, h = 0, components = 0;
    stbi_uc* pixels =
        stbi_load_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()),
                              static_cast<int>(bytes.size()), &w, &h, &components, channels);
    if (pixels == nullptr) {
      return invalidArgument(entry.path + ": cannot decode the image (" + stbi_failure_reason() +
                             ")");
    }
    if (w != entry.width || h != entry.height) {
      stbi_image_free(pixels);
      return invalidArgument(entry.path + ": the image changed since the dataset was opened");
    }
    const int64_t plane = static_cast<int64_t>(h) * w;
    chw.resize(static_cast<size_t>(plane * channels));
    for (int64_t p = 0; p < plane; ++p) {
      for (int c = 0; c < channels; ++c) chw[c * plane + p] = pixels[p * channels + c];
    }
    stbi_image_free(pixels);
    return Status::ok();
  }

  std::string source_;
  std::vector<ImageEntry> entries_;
  std::vector<std::string> classes_;
  Plan plan_;
  Shape sample_shape_;
  int64_t skipped_;
};

StatusOr<std::unique_ptr<SampleReader>> makeImageReader(const std::string& source,
                                                        std::vector<ImageEntry> entries,
                                                        std::vector<std::string> classes,
                                                        const Preprocess& preprocess,
                                                        int64_t skipped) {
  NNC_ASSIGN_OR_RETURN(Plan plan, makePlan(preprocess, /*eight_bit=*/true));
  // "As is" for a folder: the first image's channels (grey or rgb); the others convert to it.
  if (plan.channels == 0) plan.channels = decodedChannels(entries.front().components);
  Shape sample_shape;
  const ImageEntry* first = nullptr;
  for (const ImageEntry& e : entries) {
    NNC_ASSIGN_OR_RETURN(
        Shape shape,
        planOutputShape(plan, {decodedChannels(e.components), e.height, e.width}, e.path));
    if (first == nullptr) {
      first = &e;
      sample_shape = shape;
    } else if (shape != sample_shape) {
      const bool resized = plan.size || plan.shorter_side;
      return invalidArgument(
          source + ": images differ in size" + (resized ? " after resizing" : "") + ": " + e.path +
          " is " + std::to_string(e.height) + "x" + std::to_string(e.width) + " but " +
          first->path + " is " + std::to_string(first->height) + "x" +
          std::to_string(first->width) +
          " (pass --size HxW, or --size N with --center-crop HxW, to give them one shape)");
    }
  }
  return std::unique_ptr<SampleReader>(new ImageReader(source, std::move(entries),
                                                       std::move(classes), std::move(plan),
                                                       std::move(sample_shape), skipped));
}

// Regular, non-hidden files of `dir` (recursively when `recursive`), sorted by path.
StatusOr<std::vector<fs::path>> listFiles(const fs::path& dir, bool recursive,
                                          std::vector<fs::path>* subdirs) {
  std::vector<fs::path> files;
  std::error_code ec;
  auto visit = [&](const fs::directory_entry& entry) {
    std::error_code type_ec;
    if (entry.is_directory(type_ec)) {
      if (subdirs != nullptr) subdirs->push_back(entry.path());
    } else if (entry.is_regular_file(type_ec)) {
      files.push_back(entry.path());
    }
  };
  auto hidden = [](const fs::path& p) { return p.filename().string().starts_with("."); };
  if (recursive) {
    // Symlinked folders inside a class folder are not followed (no cycles).
    fs::recursive_directory_iterator it(dir, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
      std::error_code type_ec;
      const bool is_dir = it->is_directory(type_ec);
      if (hidden(it->path())) {
        if (is_dir) it.disable_recursion_pending();
        continue;
      }
      if (!is_dir) visit(*it);
    }
  } else {
    fs::directory_iterator it(dir, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
      if (!hidden(it->path())) visit(*it);
    }
  }
  if (ec) return ioError(dir.string() + ": cannot list: " + ec.message());
  std::sort(files.begin(), files.end());
  if (subdirs != nullptr) std::sort(subdirs->begin(), subdirs->end());
  return files;
}

}  // namespace

bool looksLikeImage(std::string_view h) {
  auto starts = [&](std::string_view magic) { return h.substr(0, magic.size()) == magic; };
  return starts("\x89PNG\r\n\x1a\n") || starts("\xff\xd8\xff") || starts("GIF87a") ||
         starts("GIF89a") || starts("BM") ||
         (h.size() >= 3 && h[0] == 'P' && (h[1] == '5' || h[1] == '6') &&
          std::isspace(static_cast<unsigned char>(h[2])));
}

namespace {

struct FolderScan {
  std::vector<ImageEntry> images;
  std::vector<std::string> classes;  // empty: no class subfolders
  int64_t skipped = 0;               // files that are not images
};

StatusOr<FolderScan> scanImageFolder(const std::string& dir) {
  std::vector<fs::path> subdirs;
  NNC_ASSIGN_OR_RETURN(std::vector<fs::path> top_files,
                       listFiles(dir, /*recursive=*/false, &subdirs));
  FolderScan scan;
  std::vector<ImageEntry> top_images;
  for (const fs::path& path : top_files) {
    NNC_ASSIGN_OR_RETURN(auto image, probeImage(path));
    if (image) {
      top_images.push_back(std::move(*image));
    } else {
      ++scan.skipped;
    }
  }
  // One class per subfolder (empty ones too, so indices follow the sorted folder names).
  std::vector<ImageEntry> class_images;
  std::vector<std::string> classes;
  for (const fs::path& subdir : subdirs) {
    const int64_t label = static_cast<int64_t>(classes.size());
    classes.push_back(subdir.filename().string());
    NNC_ASSIGN_OR_RETURN(std::vector<fs::path> files,
                         listFiles(subdir, /*recursive=*/true, nullptr));
    for (const fs::path& path : files) {
      NNC_ASSIGN_OR_RETURN(auto image, probeImage(path));
      if (!image) {
        ++scan.skipped;
        continue;
      }
      image->label = label;
      class_images.push_back(std::move(*image));
    }
  }
  if (!top_images.empty() && !class_images.empty()) {
    return invalidArgument(dir + ": has images both at the top (" + top_images.front().path +
                           ") and in class subfolders (" + class_images.front().path +
                           "); put every image in a class subfolder, or none");
  }
  if (top_images.empty() && class_images.empty()) {
    return invalidArgument(dir + ": no data found: no " + std::string(kImageFormats) +
                           " images (in it or in class subfolders) and no .pb files");
  }
  if (!top_images.empty()) {
    scan.images = std::move(top_images);
  } else {
    scan.images = std::move(class_images);
    scan.classes = std::move(classes);
  }
  return scan;
}

}  // namespace

// Every image under `dir` at any depth, sorted by path; no classes.
StatusOr<FolderScan> scanUnlabelledFolder(const std::string& dir) {
  NNC_ASSIGN_OR_RETURN(std::vector<fs::path> files, listFiles(dir, /*recursive=*/true, nullptr));
  FolderScan scan;
  for (const fs::path& path : files) {
    NNC_ASSIGN_OR_RETURN(auto image, probeImage(path));
    if (image) {
      scan.images.push_back(std::move(*image));
    } else {
      ++scan.skipped;
    }
  }
  if (scan.images.empty())
    return invalidArgument(dir + ": no data found: no " + std::string(kImageFormats) +
                           " images in it or its subfolders and no .pb files");
  return scan;
}

StatusOr<std::unique_ptr<SampleReader>> openImageFolder(const std::string& dir,
                                                        const Preprocess& preprocess,
                                                        FolderLayout layout) {
  NNC_ASSIGN_OR_RETURN(FolderScan scan, layout == FolderLayout::kUnlabelled
                                            ? scanUnlabelledFolder(dir)
                                            : scanImageFolder(dir));
  return makeImageReader(dir, std::move(scan.images), std::move(scan.classes), preprocess,
                         scan.skipped);
}

StatusOr<std::vector<int64_t>> imageFolderLabels(const std::string& dir) {
  NNC_ASSIGN_OR_RETURN(FolderScan scan, scanImageFolder(dir));
  if (scan.classes.empty()) {
    return invalidArgument(dir + ": a folder gives labels only when its images are in one " +
                           "subfolder per class");
  }
  std::vector<int64_t> labels;
  labels.reserve(scan.images.size());
  for (const ImageEntry& e : scan.images) labels.push_back(e.label);
  return labels;
}

StatusOr<std::unique_ptr<SampleReader>> openImageFile(const std::string& path,
                                                      const Preprocess& preprocess) {
  NNC_ASSIGN_OR_RETURN(auto image, probeImage(path));
  if (!image) {
    return invalidArgument(path + ": not a " + std::string(kImageFormats) + " image");
  }
  std::vector<ImageEntry> entries;
  entries.push_back(std::move(*image));
  return makeImageReader(path, std::move(entries), {}, preprocess, 0);
}

}  // namespace nnc::data::internal
