// Tests of the data module: dataset readers (IDX, .npy, TensorProto folders, image folders),
// preprocessing, labels and .npy writing. Expected values come from independent tools (Python
// gzip + numpy, PIL) and are hard-coded with a note on how they were obtained.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <numeric>

#include "nncompress/data/dataset.h"
#include "nncompress/data/npy.h"
#include "nncompress/data/preprocess.h"
#include "nncompress/data/tensor_proto_file.h"
#include "test_util.h"

namespace nnc::data {
namespace {

namespace fs = std::filesystem;
using nnc::testing::TempDir;
using nnc::testing::writeText;

const std::string kFashion = "/usr/share/datasets/fashion-mnist/";
const std::string kNodeData = std::string(NNC_TESTDATA_DIR) + "/node/";
const std::string kSkimage = "/usr/lib/python3/dist-packages/skimage/data/";

// Test data is installed by tools/bootstrap.sh: a missing file fails the test (never a skip
// counted as a pass).
#define REQUIRE_DATA(path, package)                                                          \
  ASSERT_TRUE(fs::exists(path)) << (path) << " is missing: run tools/bootstrap.sh (apt-get " \
                                << "install -y " << (package) << ")"

std::vector<float> values(const Tensor& t) {
  auto d = t.data<float>();
  return {d.begin(), d.end()};
}

// Row `i` of a batch (sample i, flattened).
std::vector<float> row(const Tensor& t, int64_t i) {
  const int64_t n = t.numel() / t.dim(0);
  auto d = t.data<float>();
  return {d.begin() + i * n, d.begin() + (i + 1) * n};
}

// Element of a [N, C, H, W] batch.
float at(const Tensor& t, int64_t n, int64_t c, int64_t y, int64_t x) {
  return t.data<float>()[((n * t.dim(1) + c) * t.dim(2) + y) * t.dim(3) + x];
}

std::unique_ptr<SampleReader> mustOpen(const std::string& spec, const Preprocess& p = {}) {
  auto reader = openData(spec, p);
  EXPECT_TRUE(reader.isOk()) << reader.status().toString();
  if (!reader.isOk()) return nullptr;
  return std::move(reader).value();
}

Tensor mustRead(SampleReader& reader, int64_t start, int64_t count) {
  auto batch = reader.readBatch(start, count);
  EXPECT_TRUE(batch.isOk()) << batch.status().toString();
  return batch.isOk() ? std::move(batch).value() : Tensor();
}

Preprocess options(std::initializer_list<std::pair<const char*, const char*>> flags) {
  Preprocess p;
  for (const auto& [name, value] : flags) {
    const Status s = setPreprocessOption(p, name, value);
    EXPECT_TRUE(s.isOk()) << s.toString();
  }
  return p;
}

void expectError(const Status& status, StatusCode code, const std::string& needle) {
  EXPECT_EQ(status.code(), code) << status.toString();
  EXPECT_NE(status.message().find(needle), std::string::npos)
      << "'" << needle << "' not in: " << status.message();
}

// Builds protobuf wire-format bytes by hand (for TensorProto encodings the ONNX test data does
// not use: typed fields, unpacked repeated fields).
struct Wire {
  std::string bytes;
  void varint(uint64_t v) {
    while (v >= 0x80) {
      bytes += static_cast<char>((v & 0x7f) | 0x80);
      v >>= 7;
    }
    bytes += static_cast<char>(v);
  }
  void key(int field, int type) { varint(static_cast<uint64_t>(field) << 3 | type); }
  void field(int f, uint64_t v) {
    key(f, 0);
    varint(v);
  }
  void packedVarints(int f, const std::vector<int64_t>& vs) {
    Wire inner;
    for (int64_t v : vs) inner.varint(static_cast<uint64_t>(v));
    lengthDelimited(f, inner.bytes);
  }
  template <typename T>
  void packedFixed(int f, const std::vector<T>& vs) {
    lengthDelimited(f,
                    std::string(reinterpret_cast<const char*>(vs.data()), vs.size() * sizeof(T)));
  }
  void lengthDelimited(int f, const std::string& payload) {
    key(f, 2);
    varint(payload.size());
    bytes += payload;
  }
};

// ---------------------------------------------------------------- IDX (Fashion-MNIST)

// Expected values computed with Python 3 (gzip + numpy 1.24):
//   x = np.frombuffer(gzip.open(".../t10k-images-idx3-ubyte.gz").read(), np.uint8)[16:]
//   x = x.reshape(-1, 28, 28); y = np.frombuffer(gzip.open(labels).read(), np.uint8)[8:]
//   x[0].sum() == 33456, x[0, 20, 10] == 126, x[9999].sum() == 24390, x[0, 14] == kRow14
//   y[:10] == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7], y[-1] == 5, np.bincount(y) == [1000] * 10
const std::vector<int> kRow14 = {0,   0,   0,   0,   0,   0,   2,   4,   1,   0,
                                 0,   0,   98,  136, 110, 109, 110, 162, 135, 144,
                                 149, 159, 167, 144, 158, 169, 119, 0};

TEST(IdxTest, FashionMnistT10kImagesAndLabels) {
  const std::string images = kFashion + "t10k-images-idx3-ubyte.gz";
  REQUIRE_DATA(images, "dataset-fashion-mnist");
  auto reader = mustOpen(images);
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(reader->size(), 10000);
  EXPECT_EQ(reader->sampleShape(), (Shape{1, 28, 28}));
  EXPECT_NE(reader->description().find("IDX uint8 (gzip)"), std::string::npos)
      << reader->description();
  EXPECT_FALSE(reader->labels().has_value());

  const Tensor first = mustRead(*reader, 0, 1);
  ASSERT_EQ(first.shape(), (Shape{1, 1, 28, 28}));
  double sum = 0;
  for (float v : values(first)) sum += v;
  EXPECT_NEAR(sum * 255.0, 33456.0, 1e-2);  // default scale 1/255 for uint8
  for (int x = 0; x < 28; ++x)
    EXPECT_FLOAT_EQ(at(first, 0, 0, 14, x), kRow14[x] / 255.f) << "at x=" << x;
  EXPECT_FLOAT_EQ(at(first, 0, 0, 20, 10), 126.f / 255.f);

  const Tensor last = mustRead(*reader, 9999, 1);
  double last_sum = 0;
  for (float v : values(last)) last_sum += v;
  EXPECT_NEAR(last_sum * 255.0, 24390.0, 1e-2);

  auto labels = readLabels(kFashion + "t10k-labels-idx1-ubyte.gz");
  ASSERT_TRUE(labels.isOk()) << labels.status().toString();
  ASSERT_EQ(labels->size(), 10000u);
  EXPECT_EQ(std::vector<int64_t>(labels->begin(), labels->begin() + 10),
            (std::vector<int64_t>{9, 2, 1, 1, 6, 1, 4, 6, 5, 7}));
  EXPECT_EQ(labels->back(), 5);
  std::vector<int> counts(10, 0);
  for (int64_t l : *labels) ++counts.at(l);
  EXPECT_EQ(counts, std::vector<int>(10, 1000));
}

TEST(IdxTest, NormalisationWithMeanAndStd) {
  const std::string images = kFashion + "t10k-images-idx3-ubyte.gz";
  REQUIRE_DATA(images, "dataset-fashion-mnist");
  // The CLI.md example: --mean 0.2860 --std 0.3530.
  auto reader = mustOpen(images, options({{"mean", "0.2860"}, {"std", "0.3530"}}));
  ASSERT_NE(reader, nullptr);
  const Tensor t = mustRead(*reader, 0, 1);
  // (126 / 255 - 0.2860) / 0.3530 = 0.58956840... (Python)
  EXPECT_NEAR(at(t, 0, 0, 20, 10), 0.5895684052657892, 1e-5);
  EXPECT_NEAR(at(t, 0, 0, 0, 0), -0.2860 / 0.3530, 1e-6);
  // An explicit scale overrides the 1/255 default.
  auto raw = mustOpen(images, options({{"scale", "1"}}));
  EXPECT_FLOAT_EQ(at(mustRead(*raw, 0, 1), 0, 0, 20, 10), 126.f);
}

TEST(IdxTest, BatchesAreConsistent) {
  const std::string images = kFashion + "t10k-images-idx3-ubyte.gz";
  REQUIRE_DATA(images, "dataset-fashion-mnist");
  auto reader = mustOpen(images);
  ASSERT_NE(reader, nullptr);
  const Tensor ten = mustRead(*reader, 0, 10);
  const Tensor five = mustRead(*reader, 5, 5);
  ASSERT_EQ(ten.shape(), (Shape{10, 1, 28, 28}));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(row(ten, 5 + i), row(five, i)) << "sample " << 5 + i;
  for (int i = 0; i < 10; ++i) EXPECT_EQ(row(ten, i), row(mustRead(*reader, i, 1), 0));
  EXPECT_EQ(mustRead(*reader, 10000, 0).shape(), (Shape{0, 1, 28, 28}));
  expectError(reader->readBatch(9995, 6).status(), StatusCode::kInvalidArgument, "outside");
  expectError(reader->readBatch(-1, 1).status(), StatusCode::kInvalidArgument, "outside");
}

// --data-range: a slice reads the same samples as the whole set at the shifted index, and its
// labels (from --labels or from class subfolders) are sliced alike.
TEST(DataRangeTest, SliceReadsTheSameSamples) {
  const std::string images = kFashion + "t10k-images-idx3-ubyte.gz";
  REQUIRE_DATA(images, "dataset-fashion-mnist");
  auto whole = mustOpen(images);
  auto sliced = sliceData(mustOpen(images), DataRange{9990, 10000});
  ASSERT_TRUE(sliced.isOk()) << sliced.status().toString();
  EXPECT_EQ((*sliced)->size(), 10);
  EXPECT_EQ((*sliced)->sampleShape(), (Shape{1, 28, 28}));
  EXPECT_NE((*sliced)->description().find("range 9990:10000"), std::string::npos);
  const Tensor ten = mustRead(**sliced, 0, 10);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(row(ten, i), row(mustRead(*whole, 9990 + i, 1), 0));
  EXPECT_EQ(row(mustRead(**sliced, 3, 2), 1), row(mustRead(*whole, 9994, 1), 0));
  expectError((*sliced)->readBatch(5, 6).status(), StatusCode::kInvalidArgument, "outside");

  auto labels = readLabels(kFashion + "t10k-labels-idx1-ubyte.gz");
  ASSERT_TRUE(labels.isOk());
  auto tail = sliceLabels(*labels, DataRange{9990, -1});
  ASSERT_TRUE(tail.isOk());
  EXPECT_EQ(*tail, std::vector<int64_t>(labels->end() - 10, labels->end()));
  EXPECT_EQ(tail->back(), 5);  // y[-1] (Python, above)
  expectError(sliceLabels(*labels, DataRange{0, 10001}).status(), StatusCode::kInvalidArgument,
              "does not fit the 10000 labels");
  expectError(sliceData(mustOpen(images), DataRange{10000, -1}).status(),
              StatusCode::kInvalidArgument, "range 10000: does not fit the 10000 samples");
  // The whole range is the reader itself.
  auto all = sliceData(mustOpen(images), DataRange{0, 10000});
  ASSERT_TRUE(all.isOk());
  EXPECT_EQ((*all)->description().find("range"), std::string::npos);
}

TEST(DataRangeTest, ParsesAAndBAndRefusesTheRest) {
  const auto parsed = [](const std::string& text) {
    auto r = parseDataRange(text);
    EXPECT_TRUE(r.isOk()) << text << ": " << r.status().toString();
    return r.isOk() ? std::pair<int64_t, int64_t>{r->begin, r->end} : std::pair<int64_t, int64_t>{};
  };
  EXPECT_EQ(parsed("50000:60000"), (std::pair<int64_t, int64_t>{50000, 60000}));
  EXPECT_EQ(parsed("0:1"), (std::pair<int64_t, int64_t>{0, 1}));
  EXPECT_EQ(parsed("100:"), (std::pair<int64_t, int64_t>{100, -1}));
  EXPECT_EQ(parsed(":50000"), (std::pair<int64_t, int64_t>{0, 50000}));
  for (const char* bad : {"", ":", "5", "5:5", "6:5", "-1:5", "1:-5", "a:b", "1:2:3", " 1:2",
                          "1.5:3", "0x1:5", "99999999999999999999:1"})
    expectError(parseDataRange(bad).status(), StatusCode::kInvalidArgument, "is not a range");
}

// IDX written by hand: uncompressed, big-endian int16 data, and 1-D labels.
TEST(IdxTest, UncompressedBigEndianTypes) {
  TempDir dir;
  // magic 0 0 0x0B (int16) 3 dims, dims {2, 2, 3}, then 12 big-endian int16 values.
  std::string idx = {0, 0, 0x0B, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3};
  for (int v = -6; v < 6; ++v) {
    const uint16_t u = static_cast<uint16_t>(v * 100);
    idx += static_cast<char>(u >> 8);
    idx += static_cast<char>(u & 0xff);
  }
  writeText(dir / "data-idx3-short", idx);
  auto reader = mustOpen((dir / "data-idx3-short").string());
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(reader->sampleShape(), (Shape{1, 2, 3}));
  const Tensor t = mustRead(*reader, 0, 2);
  std::vector<float> want;
  for (int v = -6; v < 6; ++v) want.push_back(v * 100.f);  // int16: scale 1
  EXPECT_EQ(values(t), want);

  writeText(dir / "labels-idx1-ubyte", std::string{0, 0, 8, 1, 0, 0, 0, 3, 7, 0, 9});
  auto labels = readLabels((dir / "labels-idx1-ubyte").string());
  ASSERT_TRUE(labels.isOk()) << labels.status().toString();
  EXPECT_EQ(*labels, (std::vector<int64_t>{7, 0, 9}));

  // One byte short of its header's size.
  writeText(dir / "short-idx1-ubyte", std::string{0, 0, 8, 1, 0, 0, 0, 3, 7, 0});
  expectError(openData((dir / "short-idx1-ubyte").string()).status(), StatusCode::kInvalidArgument,
              "short-idx1-ubyte: IDX header says");
  // Image IDX is not a label file.
  expectError(readLabels((dir / "data-idx3-short").string()).status(), StatusCode::kInvalidArgument,
              "labels must have shape [N]");
}

TEST(IdxTest, TruncatedGzip) {
  const std::string labels = kFashion + "t10k-labels-idx1-ubyte.gz";
  REQUIRE_DATA(labels, "dataset-fashion-mnist");
  TempDir dir;
  writeText(dir / "cut.gz", nnc::testing::readText(labels).substr(0, 1000));
  const std::string path = (dir / "cut.gz").string();
  expectError(readLabels(path).status(), StatusCode::kInvalidArgument, path + ": truncated gzip");
}

// ---------------------------------------------------------------- .npy

TEST(NpyTest, RoundTripsDtypesAndShapes) {
  TempDir dir;
  const std::vector<Tensor> tensors = {
      Tensor::fromVector<float>({2, 3}, {1.5f, -2, 0, 3, 4e10f, -1e-7f}),
      Tensor::fromVector<double>({3}, {1.0 / 3, -2, 1e300}),
      Tensor::fromVector<uint8_t>({1, 2, 2}, {0, 1, 254, 255}),
      Tensor::fromVector<int64_t>({2}, {-5, int64_t{1} << 40}),
      Tensor::fromVector<int32_t>({}, {42}),
      Tensor::fromVector<int8_t>({2, 1}, {-128, 127}),
      Tensor::fromVector<uint16_t>({0, 4}, {}),
  };
  for (size_t i = 0; i < tensors.size(); ++i) {
    const std::string path = (dir.path() / "t").string() + std::to_string(i) + ".npy";
    ASSERT_TRUE(writeNpy(path, tensors[i]).isOk());
    auto back = readNpy(path);
    ASSERT_TRUE(back.isOk()) << back.status().toString();
    EXPECT_EQ(*back, tensors[i]) << "tensor " << i << " " << dtypeName(tensors[i].dtype());
    // The header is padded so that the data starts at a multiple of 64 bytes.
    const std::string bytes = nnc::testing::readText(path);
    EXPECT_EQ((bytes.size() - tensors[i].byteSize()) % 64, 0u);
  }
  const std::string bytes = nnc::testing::readText(dir / "t1.npy");
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_NE(bytes.find("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }"),
            std::string::npos);
  EXPECT_NE(nnc::testing::readText(dir / "t4.npy").find("'shape': ()"), std::string::npos);

  Tensor bf16(DType::kBFloat16, {2});
  expectError(writeNpy((dir / "bf16.npy").string(), bf16), StatusCode::kUnsupported, "bfloat16");
  expectError(writeNpy((dir / "missing" / "x.npy").string(), tensors[0]), StatusCode::kIoError,
              "x.npy");
  // Nothing left behind by the failed or successful writes but the outputs.
  for (const auto& e : fs::directory_iterator(dir.path()))
    EXPECT_FALSE(e.path().filename().string().starts_with(".")) << e.path();
}

// A .npy header written by hand: version 2 and big-endian float32, as numpy writes for
// np.save(f, np.array([[1, 2], [3, -4]], dtype=">f4")) with a v2 header.
std::string handWrittenNpy(const std::string& dict, const std::string& data, int version) {
  std::string header = dict;
  const size_t prefix = version == 1 ? 10 : 12;
  header.append((64 - (prefix + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::string out("\x93NUMPY", 6);
  out += static_cast<char>(version);
  out += '\0';
  const uint32_t n = static_cast<uint32_t>(header.size());
  out += static_cast<char>(n & 0xff);
  out += static_cast<char>(n >> 8);
  if (version != 1) out += std::string{static_cast<char>(n >> 16), static_cast<char>(n >> 24)};
  return out + header + data;
}

TEST(NpyTest, ReadsVersion2BigEndian) {
  TempDir dir;
  std::string data;
  for (float f : {1.f, 2.f, 3.f, -4.f}) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    for (int shift = 24; shift >= 0; shift -= 8) data += static_cast<char>(bits >> shift);
  }
  writeText(dir / "be.npy",
            handWrittenNpy("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }", data, 2));
  auto t = readNpy((dir / "be.npy").string());
  ASSERT_TRUE(t.isOk()) << t.status().toString();
  EXPECT_EQ(t->shape(), (Shape{2, 2}));
  EXPECT_EQ(values(*t), (std::vector<float>{1, 2, 3, -4}));
  // As data: 2 samples of [2].
  auto reader = mustOpen((dir / "be.npy").string());
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(values(mustRead(*reader, 1, 1)), (std::vector<float>{3, -4}));
}

TEST(NpyTest, RejectsWhatItCannotRead) {
  TempDir dir;
  const std::string four(16, '\0');
  writeText(dir / "fortran.npy",
            handWrittenNpy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", four, 1));
  expectError(openData((dir / "fortran.npy").string()).status(), StatusCode::kInvalidArgument,
              "Fortran order");
  writeText(dir / "complex.npy",
            handWrittenNpy("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", four, 1));
  expectError(openData((dir / "complex.npy").string()).status(), StatusCode::kInvalidArgument,
              "unsupported .npy dtype '<c8'");
  writeText(dir / "short.npy",
            handWrittenNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", four, 1));
  expectError(openData((dir / "short.npy").string()).status(), StatusCode::kInvalidArgument,
              "short.npy: .npy header says float32 [5] (20 bytes of data) but the file has 16");
  writeText(dir / "scalar.npy",
            handWrittenNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
                           four.substr(0, 4), 1));
  expectError(openData((dir / "scalar.npy").string()).status(), StatusCode::kInvalidArgument,
              "0-d scalar");
}

// Files written by numpy, shipped with scikit-image. Values from Python:
//   a = np.load("lfw_subset.npy")  # float64 (200, 25, 25)
//   a[0, 10, :5] = [0.30326798558235163, 0.4130719006061546, 0.45882353186607366,
//                   0.505882382392883, 0.585620880126953]; a[199, 24, 24] = 0.047712419182062205
TEST(NpyTest, ReadsNumpyWrittenFiles) {
  const std::string lfw = kSkimage + "lfw_subset.npy";
  REQUIRE_DATA(lfw, "python3-skimage");
  auto reader = mustOpen(lfw);
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(reader->size(), 200);
  EXPECT_EQ(reader->sampleShape(), (Shape{25, 25}));
  const Tensor first = mustRead(*reader, 0, 1);
  const std::vector<double> want = {0.30326798558235163, 0.4130719006061546, 0.45882353186607366,
                                    0.505882382392883, 0.585620880126953};
  for (int x = 0; x < 5; ++x)
    EXPECT_FLOAT_EQ(first.data<float>()[10 * 25 + x], static_cast<float>(want[x]));  // scale 1
  EXPECT_FLOAT_EQ(mustRead(*reader, 199, 1).data<float>()[24 * 25 + 24], 0.047712419182062205f);

  // uint8 (200, 200, 3), first pixel white: the 1/255 default makes it 1.
  auto chess = mustOpen(kSkimage + "chessboard_RGB_U8.npy");
  ASSERT_NE(chess, nullptr);
  EXPECT_EQ(chess->sampleShape(), (Shape{200, 3}));
  EXPECT_EQ(row(mustRead(*chess, 0, 1), 0)[0], 1.f);
}

TEST(NpyTest, ImagePreprocessingOnArrays) {
  TempDir dir;
  const std::string path = (dir / "x.npy").string();
  // One sample [1, 2, 2] = [[0, 1], [2, 3]].
  ASSERT_TRUE(writeNpy(path, Tensor::fromVector<float>({1, 1, 2, 2}, {0, 1, 2, 3})).isOk());
  auto up = mustOpen(path, options({{"size", "4x4"}}));
  ASSERT_NE(up, nullptr);
  EXPECT_EQ(up->sampleShape(), (Shape{1, 4, 4}));
  // torch.nn.functional.interpolate(x, size=(4, 4), mode="bilinear", align_corners=False)
  const std::vector<float> want = {0,   0.25, 0.75, 1,   0.5, 0.75, 1.25, 1.5,
                                   1.5, 1.75, 2.25, 2.5, 2,   2.25, 2.75, 3};
  EXPECT_EQ(values(mustRead(*up, 0, 1)), want);

  // Channels: [3, 1, 2] samples as RGB; bgr reverses, grey is BT.601 luma, rgb keeps.
  ASSERT_TRUE(
      writeNpy(path, Tensor::fromVector<float>({1, 3, 1, 2}, {1, 2, 10, 20, 100, 200})).isOk());
  auto bgr = mustOpen(path, options({{"channels", "bgr"}}));
  EXPECT_EQ(values(mustRead(*bgr, 0, 1)), (std::vector<float>{100, 200, 10, 20, 1, 2}));
  auto grey = mustOpen(path, options({{"channels", "grey"}}));
  ASSERT_EQ(grey->sampleShape(), (Shape{1, 1, 2}));
  const Tensor g = mustRead(*grey, 0, 1);
  EXPECT_NEAR(g.data<float>()[0], 0.299 * 1 + 0.587 * 10 + 0.114 * 100, 1e-4);
  // Per-channel mean/std after scaling: (x * 0.5 - mean[c]) / std[c].
  auto norm = mustOpen(path, options({{"scale", "1/2"}, {"mean", "0,5,50"}, {"std", "1,2,4"}}));
  ASSERT_NE(norm, nullptr);
  EXPECT_EQ(values(mustRead(*norm, 0, 1)),
            (std::vector<float>{0.5, 1, (5 - 5) / 2.f, (10 - 5) / 2.f, 0, (100 - 50) / 4.f}));
  // A grey sample becomes rgb by repetition.
  ASSERT_TRUE(writeNpy(path, Tensor::fromVector<uint8_t>({1, 1, 1, 2}, {51, 255})).isOk());
  auto rgb = mustOpen(path, options({{"channels", "rgb"}}));
  const std::vector<float> repeated = values(mustRead(*rgb, 0, 1));
  const std::vector<float> want_rgb = {0.2f, 1, 0.2f, 1, 0.2f, 1};
  ASSERT_EQ(repeated.size(), want_rgb.size());
  for (size_t i = 0; i < want_rgb.size(); ++i) EXPECT_FLOAT_EQ(repeated[i], want_rgb[i]);

  // Options that do not fit the data.
  expectError(openData(path, options({{"mean", "1,2"}})).status(), StatusCode::kInvalidArgument,
              "--mean has 2 values but samples [1x1x2] have 1 channels");
  expectError(openData(path, options({{"center-crop", "2x2"}})).status(),
              StatusCode::kInvalidArgument, "--center-crop 2x2 is larger than the image (1x2)");
  ASSERT_TRUE(writeNpy(path, Tensor::fromVector<float>({2, 3}, {1, 2, 3, 4, 5, 6})).isOk());
  expectError(openData(path, options({{"size", "4x4"}})).status(), StatusCode::kInvalidArgument,
              "need samples shaped [C,H,W], but its samples are [3]");
}

// ---------------------------------------------------------------- TensorProto .pb

TEST(TensorProtoTest, OnnxTestDataFolder) {
  const std::string relu = kNodeData + "test_relu/test_data_set_0";
  REQUIRE_DATA(relu, "libonnx-testdata");
  // input_0.pb is float [3, 4, 5]; output_0.pb is the expected Relu output (ignored as data).
  auto reader = mustOpen(relu);
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(reader->size(), 3);
  EXPECT_EQ(reader->sampleShape(), (Shape{4, 5}));
  const Tensor x = mustRead(*reader, 0, 3);
  auto input = readTensorProtoFile(relu + "/input_0.pb");
  auto output = readTensorProtoFile(relu + "/output_0.pb");
  ASSERT_TRUE(input.isOk() && output.isOk());
  EXPECT_EQ(input->shape(), (Shape{3, 4, 5}));
  EXPECT_EQ(values(x), values(*input));
  // Independent check of the decoding: the stored output is max(x, 0).
  int negatives = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float v = x.data<float>()[i];
    negatives += v < 0;
    EXPECT_EQ(output->data<float>()[i], std::max(v, 0.f)) << "at " << i;
  }
  EXPECT_GT(negatives, 5);
  // The single file opens as data too.
  auto file = mustOpen(relu + "/input_0.pb");
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(values(mustRead(*file, 1, 2)), values(mustRead(*reader, 1, 2)));
}

TEST(TensorProtoTest, Uint8DataGetsDefaultScale) {
  const std::string dir = kNodeData + "test_add_uint8/test_data_set_0";
  REQUIRE_DATA(dir, "libonnx-testdata");
  TempDir tmp;
  fs::copy_file(dir + "/input_0.pb", tmp / "input_0.pb");
  auto reader = mustOpen(tmp.path().string());
  ASSERT_NE(reader, nullptr);
  auto raw = readTensorProtoFile(dir + "/input_0.pb");
  ASSERT_TRUE(raw.isOk());
  ASSERT_EQ(raw->dtype(), DType::kUInt8);
  const Tensor t = mustRead(*reader, 0, reader->size());
  ASSERT_EQ(t.numel(), raw->numel());
  for (int64_t i = 0; i < t.numel(); ++i)
    EXPECT_FLOAT_EQ(t.data<float>()[i], raw->data<uint8_t>()[i] / 255.f);
}

TEST(TensorProtoTest, SeveralInputsWithDifferentShapesAreAnError) {
  const std::string dir = kNodeData + "test_basic_conv_with_padding/test_data_set_0";
  REQUIRE_DATA(dir, "libonnx-testdata");
  // x is [1, 1, 5, 5] = 0..24 (onnx/backend/test/case/node/conv.py); W is [1, 1, 3, 3].
  auto x = readTensorProtoFile(dir + "/input_0.pb");
  ASSERT_TRUE(x.isOk());
  std::vector<float> iota(25);
  std::iota(iota.begin(), iota.end(), 0.f);
  EXPECT_EQ(values(*x), iota);
  expectError(openData(dir).status(), StatusCode::kInvalidArgument,
              "inconsistent shapes: input_1.pb is [1x1x3x3] but input_0.pb is [1x1x5x5]");
}

// input_0.pb .. input_11.pb, sorted by number; each a batch [1, 2] or one sample [2].
TEST(TensorProtoTest, HandEncodedFieldsAndNaturalOrder) {
  TempDir dir;
  for (int k = 0; k < 12; ++k) {
    Wire w;
    if (k % 2 == 0) {  // packed dims [1, 2] and packed float_data
      w.packedVarints(1, {1, 2});
      w.field(2, 1);
      w.packedFixed<float>(4, {static_cast<float>(k), -static_cast<float>(k)});
    } else {  // unpacked dims [2], unpacked float_data (wire type 5), a name
      w.field(1, 2);
      w.field(2, 1);
      for (float f : {static_cast<float>(k), -static_cast<float>(k)}) {
        w.key(4, 5);
        w.bytes.append(reinterpret_cast<const char*>(&f), 4);
      }
      w.lengthDelimited(8, "x");
    }
    writeText(dir / ("input_" + std::to_string(k) + ".pb"), w.bytes);
  }
  auto reader = mustOpen(dir.path().string());
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(reader->size(), 12);
  const Tensor t = mustRead(*reader, 0, 12);
  for (int k = 0; k < 12; ++k) EXPECT_EQ(row(t, k), (std::vector<float>{1.f * k, -1.f * k}));

  auto check = [&](const Wire& w, DType dtype, Shape shape, std::vector<double> want) {
    auto tensor = parseTensorProto(w.bytes, "hand");
    ASSERT_TRUE(tensor.isOk()) << tensor.status().toString();
    EXPECT_EQ(tensor->dtype(), dtype);
    EXPECT_EQ(tensor->shape(), shape);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(tensor->elementAsDouble(i), want[i]);
  };
  Wire int8s;  // int32_data holds int8 values, negatives as 10-byte varints
  int8s.packedVarints(1, {3});
  int8s.field(2, 3);
  int8s.packedVarints(5, {-128, 0, 127});
  check(int8s, DType::kInt8, {3}, {-128, 0, 127});
  Wire int64s;  // unpacked int64_data
  int64s.field(1, 2);
  int64s.field(2, 7);
  int64s.field(7, static_cast<uint64_t>(int64_t{-7}));
  int64s.field(7, uint64_t{1} << 40);
  check(int64s, DType::kInt64, {2}, {-7, static_cast<double>(int64_t{1} << 40)});
  Wire doubles;
  doubles.packedVarints(1, {1});
  doubles.field(2, 11);
  doubles.packedFixed<double>(10, {-0.125});
  check(doubles, DType::kFloat64, {1}, {-0.125});
  Wire halves;  // float16 bits in int32_data: 0x3c00 = 1, 0xc000 = -2
  halves.packedVarints(1, {2});
  halves.field(2, 10);
  halves.packedVarints(5, {0x3c00, 0xc000});
  check(halves, DType::kFloat16, {2}, {1, -2});

  Wire too_few;
  too_few.packedVarints(1, {3});
  too_few.field(2, 1);
  too_few.packedFixed<float>(4, {1, 2});
  expectError(parseTensorProto(too_few.bytes, "few.pb").status(), StatusCode::kInvalidArgument,
              "few.pb: TensorProto float32 [3] has 2 values, expected 3");
  Wire external;
  external.field(2, 1);
  external.field(14, 1);
  expectError(parseTensorProto(external.bytes, "ext.pb").status(), StatusCode::kInvalidArgument,
              "external file");
  Wire strings;
  strings.field(2, 8);
  expectError(parseTensorProto(strings.bytes, "s.pb").status(), StatusCode::kInvalidArgument,
              "data_type 8 (string) is not supported");
}

TEST(TensorProtoTest, NotATensorProto) {
  const std::string seq = kNodeData + "test_identity_sequence/test_data_set_0/input_0.pb";
  REQUIRE_DATA(seq, "libonnx-testdata");
  // A SequenceProto, not a TensorProto.
  expectError(openData(seq).status(), StatusCode::kInvalidArgument, seq + ": ");
  // A scalar has no sample axis.
  const std::string scalar = kNodeData + "test_adagrad/test_data_set_0";
  TempDir dir;
  fs::copy_file(scalar + "/input_0.pb", dir / "input_0.pb");
  expectError(openData(dir.path().string()).status(), StatusCode::kInvalidArgument, "scalars");
}

// ---------------------------------------------------------------- image folders

// Pixel values from PIL 9.4 (np.asarray(Image.open(f))), scikit-image 0.19.3 data:
//   astronaut.png 512x512 RGB: [0,0] = (154,147,151), [300,200] = (207,94,56)
//   chelsea.png 300x451 RGB; camera.png 512x512 L: [100,200] = 54; coins.png 303x384 L:
//   [102,142] = 65, [101,142] = 64, [102,141] = 66, [201,241] = 33, [202,241] = 31
//   horse.png 328x400 RGBA: [0,0] = (255,255,255,110)
//   rocket.jpg 427x640 RGB (libjpeg): [0,0] = (17,33,58), [200,300] = (52,68,104)
class ImageFolderTest : public ::testing::Test {
 protected:
  void SetUp() override { REQUIRE_DATA(kSkimage + "astronaut.png", "python3-skimage"); }
  // Copies skimage files into `dir`/`sub`.
  void copy(const std::string& sub, const std::vector<std::string>& files) {
    fs::create_directories(dir_ / sub);
    for (const auto& f : files)
      fs::copy_file(kSkimage + f, dir_.path() / sub / fs::path(f).filename());
  }
  std::string path(const std::string& sub = "") const { return (dir_.path() / sub).string(); }
  TempDir dir_;
};

TEST_F(ImageFolderTest, ClassSubfoldersGiveLabels) {
  copy("b_grey", {"camera.png", "coins.png"});
  copy("a_colour", {"astronaut.png", "chelsea.png"});
  copy("a_colour/nested", {"horse.png"});
  fs::create_directories(dir_ / "c_empty");
  writeText(dir_ / "README.txt", "not an image");

  // Different sizes and no --size: an error naming two of the files.
  auto unsized = openData(path());
  expectError(unsized.status(), StatusCode::kInvalidArgument, "images differ in size");
  EXPECT_NE(unsized.status().message().find("chelsea.png is 300x451"), std::string::npos)
      << unsized.status().message();

  auto reader = mustOpen(path(), options({{"size", "64x48"}}));
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(reader->size(), 5);
  // Channels "as is" follow the first image (astronaut, RGB); grey images are repeated.
  EXPECT_EQ(reader->sampleShape(), (Shape{3, 64, 48}));
  EXPECT_EQ(reader->classNames(), (std::vector<std::string>{"a_colour", "b_grey", "c_empty"}));
  ASSERT_TRUE(reader->labels().has_value());
  // Sorted paths: a_colour/astronaut, a_colour/chelsea, a_colour/nested/horse, b_grey/camera,
  // b_grey/coins.
  EXPECT_EQ(*reader->labels(), (std::vector<int64_t>{0, 0, 0, 1, 1}));
  EXPECT_NE(reader->description().find("5 files in 3 classes, 1 non-image files skipped"),
            std::string::npos)
      << reader->description();
  auto labels = readLabels(path());
  ASSERT_TRUE(labels.isOk()) << labels.status().toString();
  EXPECT_EQ(*labels, *reader->labels());

  const Tensor all = mustRead(*reader, 0, 5);
  ASSERT_EQ(all.shape(), (Shape{5, 3, 64, 48}));
  // --data-range 2:4 of a class folder: horse and camera, with their labels and class names.
  auto slice = sliceData(mustOpen(path(), options({{"size", "64x48"}})), DataRange{2, 4});
  ASSERT_TRUE(slice.isOk()) << slice.status().toString();
  EXPECT_EQ((*slice)->labels(), (std::optional<std::vector<int64_t>>{{0, 1}}));
  EXPECT_EQ((*slice)->classNames(), reader->classNames());
  EXPECT_EQ(row(mustRead(**slice, 1, 1), 0), row(all, 3));
  for (int y = 0; y < 64; y += 7) {
    for (int x = 0; x < 48; x += 5) {
      EXPECT_EQ(at(all, 3, 0, y, x), at(all, 3, 1, y, x));  // camera: grey -> rgb
      EXPECT_EQ(at(all, 3, 0, y, x), at(all, 3, 2, y, x));
    }
  }
  for (float v : values(all)) ASSERT_TRUE(v >= 0.f && v <= 1.f) << v;
  // Batches agree with each other.
  const Tensor tail = mustRead(*reader, 2, 3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(row(all, 2 + i), row(tail, i));

  auto grey =
      mustOpen(path(), options({{"size", "256"}, {"center-crop", "224"}, {"channels", "grey"}}));
  ASSERT_NE(grey, nullptr);
  EXPECT_EQ(grey->sampleShape(), (Shape{1, 224, 224}));
  EXPECT_EQ(mustRead(*grey, 1, 2).shape(), (Shape{2, 1, 224, 224}));
}

// Calibration folders (--calib): subfolders are just folders, images may also sit at the top
// (a class folder refuses that mix), every image at any depth is a sample, and none has a label.
TEST_F(ImageFolderTest, UnlabelledFolderIsReadRecursively) {
  copy("", {"camera.png"});
  copy("photos", {"coins.png"});
  copy("photos/2024/june", {"astronaut.png"});
  writeText(dir_ / "photos" / "notes.txt", "not an image");
  expectError(openData(path(), options({{"size", "32x32"}})).status(), StatusCode::kInvalidArgument,
              "both at the top");
  auto reader = openData(path(), options({{"size", "32x32"}}), FolderLayout::kUnlabelled);
  ASSERT_TRUE(reader.isOk()) << reader.status().toString();
  EXPECT_EQ((*reader)->size(), 3);
  EXPECT_FALSE((*reader)->labels().has_value());
  EXPECT_TRUE((*reader)->classNames().empty());
  // Sorted by path: camera.png, photos/2024/june/astronaut.png, photos/coins.png.
  auto camera = openData((dir_ / "camera.png").string(), options({{"size", "32x32"}}));
  ASSERT_TRUE(camera.isOk());
  EXPECT_EQ(row(mustRead(**reader, 0, 1), 0), row(mustRead(**camera, 0, 1), 0));
  fs::remove_all(dir_ / "photos");
  fs::remove(dir_ / "camera.png");
  expectError(openData(path(), {}, FolderLayout::kUnlabelled).status(),
              StatusCode::kInvalidArgument, "no data found");
}

TEST_F(ImageFolderTest, DecodedPixelValuesAndChannels) {
  copy("", {"astronaut.png"});
  auto rgb = mustOpen(path(), options({{"scale", "1"}}));
  ASSERT_NE(rgb, nullptr);
  EXPECT_FALSE(rgb->labels().has_value());
  EXPECT_EQ(rgb->sampleShape(), (Shape{3, 512, 512}));
  const Tensor t = mustRead(*rgb, 0, 1);
  EXPECT_EQ(at(t, 0, 0, 0, 0), 154);
  EXPECT_EQ(at(t, 0, 1, 0, 0), 147);
  EXPECT_EQ(at(t, 0, 2, 0, 0), 151);
  EXPECT_EQ(at(t, 0, 0, 300, 200), 207);
  EXPECT_EQ(at(t, 0, 1, 300, 200), 94);
  EXPECT_EQ(at(t, 0, 2, 300, 200), 56);

  auto bgr = mustOpen(path(), options({{"scale", "1"}, {"channels", "bgr"}}));
  const Tensor b = mustRead(*bgr, 0, 1);
  EXPECT_EQ(at(b, 0, 0, 300, 200), 56);
  EXPECT_EQ(at(b, 0, 2, 300, 200), 207);

  auto grey = mustOpen(path(), options({{"scale", "1"}, {"channels", "gray"}}));
  const Tensor g = mustRead(*grey, 0, 1);
  EXPECT_EQ(g.shape(), (Shape{1, 1, 512, 512}));
  // 0.299 * 207 + 0.587 * 94 + 0.114 * 56 = 123.455
  EXPECT_NEAR(at(g, 0, 0, 300, 200), 123.455, 1e-3);

  // ImageNet-style normalisation: ((x / 255) - mean[c]) / std[c].
  auto norm =
      mustOpen(path(), options({{"mean", "0.485,0.456,0.406"}, {"std", "0.229,0.224,0.225"}}));
  const Tensor n = mustRead(*norm, 0, 1);
  EXPECT_NEAR(at(n, 0, 0, 0, 0), (154 / 255.0 - 0.485) / 0.229, 1e-5);
  EXPECT_NEAR(at(n, 0, 2, 300, 200), (56 / 255.0 - 0.406) / 0.225, 1e-5);

  // RGBA: alpha dropped (not premultiplied).
  auto horse = mustOpen(kSkimage + "horse.png", options({{"scale", "1"}}));
  ASSERT_NE(horse, nullptr);
  EXPECT_EQ(horse->sampleShape(), (Shape{3, 328, 400}));
  const Tensor h = mustRead(*horse, 0, 1);
  EXPECT_EQ(at(h, 0, 0, 0, 0), 255);
  EXPECT_EQ(at(h, 0, 2, 0, 0), 255);

  // JPEG: stb_image and libjpeg may differ by a few levels.
  auto rocket = mustOpen(kSkimage + "rocket.jpg", options({{"scale", "1"}}));
  ASSERT_NE(rocket, nullptr);
  EXPECT_EQ(rocket->sampleShape(), (Shape{3, 427, 640}));
  const Tensor r = mustRead(*rocket, 0, 1);
  const float want[2][3] = {{17, 33, 58}, {52, 68, 104}};
  const int where[2][2] = {{0, 0}, {200, 300}};
  for (int p = 0; p < 2; ++p)
    for (int c = 0; c < 3; ++c)
      EXPECT_NEAR(at(r, 0, c, where[p][0], where[p][1]), want[p][c], 4) << "pixel " << p;
}

TEST_F(ImageFolderTest, ResizeAndCenterCropGeometry) {
  copy("", {"camera.png"});
  auto full = mustOpen(path(), options({{"scale", "1"}}));
  auto half = mustOpen(path(), options({{"scale", "1"}, {"size", "256x256"}}));
  ASSERT_TRUE(full && half);
  const Tensor f = mustRead(*full, 0, 1);
  const Tensor h = mustRead(*half, 0, 1);
  EXPECT_EQ(at(f, 0, 0, 100, 200), 54);
  // Halving with half-pixel centres samples between pixels 2y and 2y+1: the 2x2 mean.
  for (int y = 0; y < 256; ++y) {
    for (int x = 0; x < 256; ++x) {
      const float mean = (at(f, 0, 0, 2 * y, 2 * x) + at(f, 0, 0, 2 * y, 2 * x + 1) +
                          at(f, 0, 0, 2 * y + 1, 2 * x) + at(f, 0, 0, 2 * y + 1, 2 * x + 1)) /
                         4;
      ASSERT_NEAR(at(h, 0, 0, y, x), mean, 1e-4) << "at " << y << "," << x;
    }
  }

  // coins.png is 303x384: crop offsets round((303-100)/2) = 102 (half to even, as torchvision)
  // and round((384-100)/2) = 142.
  auto crop = mustOpen(kSkimage + "coins.png", options({{"scale", "1"}, {"center-crop", "100"}}));
  ASSERT_NE(crop, nullptr);
  EXPECT_EQ(crop->sampleShape(), (Shape{1, 100, 100}));
  const Tensor c = mustRead(*crop, 0, 1);
  EXPECT_EQ(at(c, 0, 0, 0, 0), 65);
  EXPECT_EQ(at(c, 0, 0, 99, 99), 33);

  // --size N: shorter side to N, aspect kept (chelsea 300x451 -> 150x225).
  auto shorter = mustOpen(kSkimage + "chelsea.png", options({{"size", "150"}}));
  ASSERT_NE(shorter, nullptr);
  EXPECT_EQ(shorter->sampleShape(), (Shape{3, 150, 225}));
  expectError(openData(kSkimage + "chelsea.png", options({{"center-crop", "400x400"}})).status(),
              StatusCode::kInvalidArgument,
              "chelsea.png: --center-crop 400x400 is larger than the image (300x451)");
}

TEST_F(ImageFolderTest, Errors) {
  // An empty folder, and one with no images.
  fs::create_directories(dir_ / "empty");
  expectError(openData(path("empty")).status(), StatusCode::kInvalidArgument, "no data found");
  fs::create_directories(dir_ / "text");
  writeText(dir_ / "text" / "notes.txt", "hello");
  expectError(openData(path("text")).status(), StatusCode::kInvalidArgument, "no data found");
  // A file named like an image that is not one.
  fs::create_directories(dir_ / "fake");
  writeText(dir_ / "fake" / "cat.png", "GIF? no, just text");
  expectError(openData(path("fake")).status(), StatusCode::kInvalidArgument,
              "cat.png: named like an image but is not");
  // Images both at the top and in class folders.
  copy("mixed", {"camera.png"});
  copy("mixed/cls", {"coins.png"});
  expectError(openData(path("mixed")).status(), StatusCode::kInvalidArgument, "both at the top");
  // A truncated JPEG: its header reads, its pixels do not.
  copy("truncated", {"truncated.jpg"});
  auto reader = openData(path("truncated"));
  const Status status = reader.isOk() ? (*reader)->readBatch(0, 1).status() : reader.status();
  expectError(status, StatusCode::kInvalidArgument, "truncated.jpg");
  // Labels from a folder without classes.
  copy("flat", {"camera.png"});
  expectError(readLabels(path("flat")).status(), StatusCode::kInvalidArgument,
              "one subfolder per class");
}

// ---------------------------------------------------------------- errors and labels

TEST(DataTest, MissingGarbageAndText) {
  TempDir dir;
  const std::string missing = (dir / "nope.npy").string();
  expectError(openData(missing).status(), StatusCode::kIoError, missing + ": no such file");
  expectError(readLabels(missing).status(), StatusCode::kIoError, missing + ": no such file");

  std::string garbage;
  for (int i = 0; i < 256; ++i) garbage += static_cast<char>((i * 73 + 11) & 0xff);
  writeText(dir / "garbage.bin", garbage);
  const std::string g = (dir / "garbage.bin").string();
  expectError(openData(g).status(), StatusCode::kInvalidArgument,
              g + ": not a recognised data format");
  expectError(readLabels(g).status(), StatusCode::kInvalidArgument,
              g + ": not a recognised label format");
  writeText(dir / "empty.bin", "");
  expectError(openData((dir / "empty.bin").string()).status(), StatusCode::kInvalidArgument,
              "file is empty");
  writeText(dir / "labels.txt", "1\n2\n");
  expectError(openData((dir / "labels.txt").string()).status(), StatusCode::kInvalidArgument,
              "is a text file");
}

TEST(DataTest, LabelFiles) {
  TempDir dir;
  writeText(dir / "labels.txt", "3\r\n 1\n\n-2  \n10");
  auto text = readLabels((dir / "labels.txt").string());
  ASSERT_TRUE(text.isOk()) << text.status().toString();
  EXPECT_EQ(*text, (std::vector<int64_t>{3, 1, -2, 10}));
  writeText(dir / "bad.txt", "3\n1\ncat\n");
  expectError(readLabels((dir / "bad.txt").string()).status(), StatusCode::kInvalidArgument,
              "bad.txt:3: 'cat' is not an integer label");

  ASSERT_TRUE(
      writeNpy((dir / "l.npy").string(), Tensor::fromVector<int64_t>({3, 1}, {4, 0, 7})).isOk());
  auto npy = readLabels((dir / "l.npy").string());
  ASSERT_TRUE(npy.isOk()) << npy.status().toString();
  EXPECT_EQ(*npy, (std::vector<int64_t>{4, 0, 7}));
  ASSERT_TRUE(writeNpy((dir / "f.npy").string(), Tensor::fromVector<float>({2}, {1, 2})).isOk());
  auto floats = readLabels((dir / "f.npy").string());
  ASSERT_TRUE(floats.isOk());
  EXPECT_EQ(*floats, (std::vector<int64_t>{1, 2}));
  ASSERT_TRUE(
      writeNpy((dir / "frac.npy").string(), Tensor::fromVector<float>({2}, {1, 2.5f})).isOk());
  expectError(readLabels((dir / "frac.npy").string()).status(), StatusCode::kInvalidArgument,
              "label 1 is 2.5");
}

TEST(PreprocessTest, ParsesOptions) {
  Preprocess p;
  ASSERT_TRUE(setPreprocessOption(p, "scale", "1/255").isOk());
  EXPECT_FLOAT_EQ(*p.scale, 1.f / 255.f);
  ASSERT_TRUE(setPreprocessOption(p, "mean", "0.485, 0.456,0.406").isOk());
  EXPECT_EQ(p.mean, (std::vector<float>{0.485f, 0.456f, 0.406f}));
  ASSERT_TRUE(setPreprocessOption(p, "size", "224x200").isOk());
  EXPECT_EQ(p.size, std::make_pair(224, 200));
  ASSERT_TRUE(setPreprocessOption(p, "size", "256").isOk());
  EXPECT_FALSE(p.size.has_value());
  EXPECT_EQ(p.shorter_side, 256);
  ASSERT_TRUE(setPreprocessOption(p, "center-crop", "224").isOk());
  EXPECT_EQ(p.center_crop, std::make_pair(224, 224));
  ASSERT_TRUE(setPreprocessOption(p, "channels", "BGR").isOk());
  EXPECT_EQ(p.channels, Preprocess::Channels::kBgr);

  expectError(setPreprocessOption(p, "std", "0.5,0"), StatusCode::kInvalidArgument,
              "--std '0.5,0': must not be 0");
  expectError(setPreprocessOption(p, "mean", "0.5,x"), StatusCode::kInvalidArgument,
              "'x' is not a finite number");
  expectError(setPreprocessOption(p, "size", "0x3"), StatusCode::kInvalidArgument, "--size '0x3'");
  expectError(setPreprocessOption(p, "scale", "1/0"), StatusCode::kInvalidArgument,
              "--scale '1/0'");
  expectError(setPreprocessOption(p, "channels", "rgba"), StatusCode::kInvalidArgument,
              "expected rgb, bgr or grey");
  expectError(setPreprocessOption(p, "resize", "3"), StatusCode::kInvalidArgument,
              "unknown preprocessing option --resize");
}

// ---- feeds for models with several inputs or integer inputs (feedModelInputs) ----

std::unique_ptr<SampleReader> npyReader(const TempDir& dir, const std::string& name,
                                        const Tensor& t) {
  const auto path = dir / name;
  EXPECT_TRUE(writeNpy(path.string(), t).isOk());
  auto r = openData(path.string());
  EXPECT_TRUE(r.isOk()) << r.status().message();
  return r.isOk() ? std::move(r).value() : nullptr;
}

TEST(ModelFeeds, IntegerInputsGetStoredValuesExactlyAndFloatInputsThePreprocessedOnes) {
  TempDir dir;
  // uint8 ids would be scaled by 1/255 as image data; an integer input takes them as stored.
  std::vector<std::unique_ptr<SampleReader>> readers;
  readers.push_back(
      npyReader(dir, "ids.npy", Tensor::fromVector<uint8_t>({3, 2}, {1, 2, 3, 4, 250, 6})));
  readers.push_back(
      npyReader(dir, "x.npy", Tensor::fromVector<uint8_t>({3, 2}, {0, 255, 0, 255, 51, 0})));
  readers.push_back(
      npyReader(dir, "mask.npy", Tensor::fromVector<float>({3, 2}, {1, 1, 1, 0, 0, 1})));
  auto fed = feedModelInputs(
      {{"ids", DType::kInt64}, {"x", DType::kFloat32}, {"mask", DType::kBool}}, std::move(readers));
  ASSERT_TRUE(fed.isOk()) << fed.status().message();
  EXPECT_EQ((*fed)->size(), 3);
  auto feeds = (*fed)->readFeeds(1, 2);
  ASSERT_TRUE(feeds.isOk()) << feeds.status().message();
  ASSERT_EQ(feeds->size(), 3u);
  EXPECT_EQ((*feeds)[0], Tensor::fromVector<int64_t>({2, 2}, {3, 4, 250, 6}));
  EXPECT_EQ((*feeds)[1].dtype(), DType::kFloat32);
  EXPECT_FLOAT_EQ((*feeds)[1].data<float>()[1], 1.f);  // 255 * 1/255
  EXPECT_FLOAT_EQ((*feeds)[1].data<float>()[2], 0.2f);
  EXPECT_EQ((*feeds)[2].dtype(), DType::kBool);
  EXPECT_EQ((*feeds)[2].bytes(), std::string("\x01\x00\x00\x01", 4));
  // readBatch is one feed, and there are three.
  EXPECT_EQ((*fed)->readBatch(0, 1).status().code(), StatusCode::kUnsupported);
}

TEST(ModelFeeds, Float64InputsGetThePreprocessedSamplesWidened) {
  TempDir dir;
  std::vector<std::unique_ptr<SampleReader>> readers;
  readers.push_back(
      npyReader(dir, "x.npy", Tensor::fromVector<uint8_t>({2, 2}, {0, 51, 102, 255})));
  auto fed = feedModelInputs({{"x", DType::kFloat64}}, std::move(readers));
  ASSERT_TRUE(fed.isOk()) << fed.status().message();
  auto x = (*fed)->readBatch(0, 2);
  ASSERT_TRUE(x.isOk()) << x.status().message();
  EXPECT_EQ(x->dtype(), DType::kFloat64);
  EXPECT_NEAR(x->data<double>()[1], 0.2, 1e-7);  // 51 / 255 in float, then widened
  EXPECT_DOUBLE_EQ(x->data<double>()[3], 1.0);
  // float16 inputs are not fed (no conversion): refused when bound, naming the input.
  std::vector<std::unique_ptr<SampleReader>> half;
  half.push_back(npyReader(dir, "h.npy", Tensor::fromVector<float>({1, 1}, {1})));
  auto refused = feedModelInputs({{"h", DType::kFloat16}}, std::move(half));
  ASSERT_FALSE(refused.isOk());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(refused.status().message().find("'h' is float16"), std::string::npos);
}

TEST(ModelFeeds, ValuesTheInputTypeCannotHoldAreRefusedNamingInputAndSample) {
  TempDir dir;
  struct Case {
    Tensor stored;
    DType to;
  };
  const Case cases[] = {
      {Tensor::fromVector<float>({2, 2}, {1, 2, 3, 2.5f}), DType::kInt64},         // a fraction
      {Tensor::fromVector<int64_t>({2, 2}, {1, 2, 3, 1LL << 40}), DType::kInt32},  // too big
      {Tensor::fromVector<int32_t>({2, 2}, {1, 0, 1, -1}), DType::kUInt8},         // negative
      {Tensor::fromVector<int32_t>({2, 2}, {1, 0, 1, 2}), DType::kBool},           // not 0 or 1
  };
  for (const Case& c : cases) {
    std::vector<std::unique_ptr<SampleReader>> readers;
    readers.push_back(npyReader(dir, "v.npy", c.stored));
    auto fed = feedModelInputs({{"ids", c.to}}, std::move(readers));
    ASSERT_TRUE(fed.isOk());
    EXPECT_TRUE((*fed)->readFeeds(0, 1).isOk()) << "sample 0 fits";
    auto bad = (*fed)->readFeeds(0, 2);
    ASSERT_FALSE(bad.isOk());
    EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(bad.status().message().find("input 'ids'"), std::string::npos);
    EXPECT_NE(bad.status().message().find("sample 1"), std::string::npos) << bad.status().message();
  }
}

TEST(ModelFeeds, SampleCountsMustAgreeAndRangesSliceEveryInput) {
  TempDir dir;
  std::vector<std::unique_ptr<SampleReader>> uneven;
  uneven.push_back(npyReader(dir, "a.npy", Tensor::fromVector<int64_t>({3, 1}, {0, 1, 2})));
  uneven.push_back(npyReader(dir, "b.npy", Tensor::fromVector<int64_t>({2, 1}, {0, 1})));
  auto bad = feedModelInputs({{"a", DType::kInt64}, {"b", DType::kInt64}}, std::move(uneven));
  ASSERT_FALSE(bad.isOk());
  EXPECT_NE(bad.status().message().find("'b' has 2 samples"), std::string::npos);

  auto ids = npyReader(dir, "ids.npy", Tensor::fromVector<int64_t>({4, 1}, {10, 11, 12, 13}));
  auto sliced = sliceData(std::move(ids), {1, 3});
  ASSERT_TRUE(sliced.isOk());
  std::vector<std::unique_ptr<SampleReader>> readers;
  readers.push_back(std::move(sliced).value());
  auto fed = feedModelInputs({{"ids", DType::kInt32}}, std::move(readers));
  ASSERT_TRUE(fed.isOk());
  auto one = (*fed)->readBatch(0, 2);  // one input: readBatch is its feed
  ASSERT_TRUE(one.isOk()) << one.status().message();
  EXPECT_EQ(*one, Tensor::fromVector<int32_t>({2, 1}, {11, 12}));
}

TEST(ModelFeeds, DecodedImagesHaveNoStoredIntegers) {
  TempDir dir;
  fs::create_directories(dir / "imgs");
  writeText(dir / "imgs" / "a.pgm", std::string("P5 2 2 255\n") + std::string(4, '\x10'));
  auto images = openData((dir / "imgs").string(), {}, FolderLayout::kUnlabelled);
  ASSERT_TRUE(images.isOk()) << images.status().message();
  std::vector<std::unique_ptr<SampleReader>> readers;
  readers.push_back(std::move(images).value());
  auto fed = feedModelInputs({{"ids", DType::kInt64}}, std::move(readers));
  ASSERT_TRUE(fed.isOk());
  auto feeds = (*fed)->readFeeds(0, 1);
  ASSERT_FALSE(feeds.isOk());
  EXPECT_EQ(feeds.status().code(), StatusCode::kUnsupported);
}

}  // namespace
}  // namespace nnc::data
