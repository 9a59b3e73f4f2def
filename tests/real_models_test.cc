// The eight real pretrained models of ../shared/real-models (issue 12, item 6), each fed real
// photographs (python3-skimage's images, preprocessed as that folder's README says):
//   Report      `report --json` works and its counts are sane;
//   Prune       `prune --ratio 0.5 --method l1` writes a model the ONNX checker and ONNX Runtime
//               accept, with the original output shapes, that equals the zeroed-consumer oracle
//               (tests/prune_oracle.h) built from the channels the CLI says it removed (its JSON
//               `groups[].removed`), relative error <= 1e-4 on every output;
//   Quantize    `quantize --calib` (int8 QDQ; the opset 9 models are converted automatically)
//               writes a model ONNX Runtime runs, whose outputs stay close to the float model's.
//   Finetune    `prune --ratio 0.3` then `finetune` from the original on the photos: the result
//               runs in ONNX Runtime and its outputs moved toward the original's.
//   Bf16 grads  the training tape's Conv gradients with bf16 products (fine-tuning's default)
//               stay within bf16 rounding of float32's on every Conv weight (weights held in
//               Constant nodes made trainable first, as finetune does), on the photos.
//   Compress    `compress --quality fidelity` on the photos (calibration included: six of the
//               models fix their batch at 1): the fidelity it claims holds in ONNX Runtime.
// Each test prints its part of the model's row; a full run prints the whole table at the end
// (tools/real_models.sh turns it into docs/real-models.md).

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "nncompress/analysis/channel_groups.h"
#include "nncompress/data/dataset.h"
#include "nncompress/data/npy.h"
#include "nncompress/exec/shape_probe.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/train/tape.h"
#include "ort_util.h"
#include "prune_oracle.h"

namespace nnc {
namespace {

using testing::TempDir;
namespace fs = std::filesystem;

const fs::path kModels = NNC_REAL_MODELS_DIR;
const fs::path kPhotos = "/usr/lib/python3/dist-packages/skimage/data";
constexpr double kOracleTolerance = 1e-4;
constexpr double kMinQuantCosine = 0.999;
// Classifiers (class scores along the last axis): their int8 top-1 must agree with float on every
// photo. The PP-OCRv4 recogniser's per-step character agreement is reported too, not gated (a step
// where float's two best characters nearly tie may flip).
const std::set<std::string> kClassifiers = {"fr_liveness.onnx", "fr_eye.onnx",
                                            "ch_ppocr_mobile_v2.0_cls_infer.onnx"};
// fr_pose is a regression read off 66 bins of 3 degrees per head (Hopenet: the angle is the
// softmax-expected bin * 3 - 99), so its gate is the expected angle, not the arg-max bin (two bins
// may nearly tie on a photo). Both are reported, not gated: at int8 today the expected angle moves
// by several degrees on one photo even with most layers kept float (a known gap of issue 14).
const std::set<std::string> kBinnedAngles = {"fr_pose.onnx"};
const std::set<std::string> kReportAgreement = {"ch_PP-OCRv4_rec_infer.onnx"};

// A region of a photo, in its pixels; height 0 means the whole photo.
struct Box {
  int top = 0, left = 0, height = 0, width = 0;
};
struct Photo {
  std::string file;
  Box box;
  std::string label;
};

// Faces for the face models, then whole photos as extra inputs.
const std::vector<Photo> kFaces = {{"astronaut.png", {25, 135, 180, 180}, "astronaut face"},
                                   {"camera.png", {70, 135, 135, 125}, "camera face"},
                                   {"chelsea.png", {}, "chelsea"},
                                   {"coffee.png", {}, "coffee"},
                                   {"rocket.jpg", {}, "rocket"}};
// Eyes cropped from the astronaut, then whole photos.
const std::vector<Photo> kEyes = {{"astronaut.png", {90, 188, 32, 32}, "astronaut left eye"},
                                  {"astronaut.png", {93, 228, 32, 32}, "astronaut right eye"},
                                  {"coffee.png", {}, "coffee"},
                                  {"chelsea.png", {}, "chelsea"}};
// Lines of text of page.png (384 x 191), then one photo.
const std::vector<Photo> kTextLines = {{"page.png", {41, 0, 20, 384}, "page line 1"},
                                       {"page.png", {61, 0, 20, 384}, "page line 2"},
                                       {"page.png", {81, 0, 20, 384}, "page line 3"},
                                       {"page.png", {0, 0, 34, 300}, "page title"},
                                       {"rocket.jpg", {}, "rocket"}};

using Channels = data::Preprocess::Channels;
const std::vector<float> kImagenetMean = {0.485f, 0.456f, 0.406f};
const std::vector<float> kImagenetStd = {0.229f, 0.224f, 0.225f};

// One model and its preprocessing (../shared/real-models/README.md).
struct RealModel {
  std::string file;
  Channels channels;
  int height, width;  // the input size (dynamic dims of PP-OCR: the README's example sizes)
  float scale;
  std::vector<float> mean, std;
  const std::vector<Photo>* photos;
  // finetune's --loss where auto would misread the output: a single [N, K] output is taken
  // for class logits, and fr_landmark's is 68 points' coordinates (a regression).
  std::string finetune_loss = "auto";
};

const RealModel kRealModels[] = {
    {"fr_landmark.onnx", Channels::kGrey, 64, 64, 1.f / 256, {}, {}, &kFaces, "mse"},
    {"fr_liveness.onnx", Channels::kRgb, 128, 128, 1.f, {}, {}, &kFaces},
    {"fr_pose.onnx", Channels::kRgb, 224, 224, 1.f / 255, kImagenetMean, kImagenetStd, &kFaces},
    {"fr_eye.onnx", Channels::kGrey, 24, 24, 1.f / 255, {}, {}, &kEyes},
    {"fr_age.onnx", Channels::kRgb, 64, 64, 1.f / 255, kImagenetMean, kImagenetStd, &kFaces},
    {"fr_gender.onnx", Channels::kRgb, 64, 64, 1.f / 255, kImagenetMean, kImagenetStd, &kFaces},
    {"ch_ppocr_mobile_v2.0_cls_infer.onnx",
     Channels::kBgr,
     48,
     192,
     1.f / 255,
     {0.5f},
     {0.5f},
     &kTextLines},
    {"ch_PP-OCRv4_rec_infer.onnx", Channels::kBgr, 48, 320, 1.f / 255, {0.5f}, {0.5f}, &kTextLines},
};

// ---------------------------------------------------------------------------------------------
// The table: each test fills its cells; a run of the whole binary prints every row at the end.

struct Row {
  std::string report = "-";  // params / MACs, or why report failed
  std::string params = "-", macs_kept = "-", groups = "-", oracle = "-", prune = "not run";
  std::string quantize = "not run", cosine = "-", agreement = "-", float_layers = "-";
  std::string finetune = "not run";
  std::string compress = "not run";
};
std::map<std::string, Row>& table() {
  static std::map<std::string, Row> rows;
  return rows;
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}
std::string sci(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1e", v);
  return buf;
}
std::string count(int64_t n) {
  if (n >= 1000000) return fixed(n / 1e6, 2) + "M";
  if (n >= 1000) return fixed(n / 1e3, 1) + "k";
  return std::to_string(n);
}
// The first line of a text (of a command's stderr: its first error line), for the table.
std::string firstLine(const std::string& text) {
  size_t start = text.find(": error: ");
  start = start == std::string::npos ? 0 : text.rfind('\n', start) + 1;
  std::string line = text.substr(start, text.find('\n', start) - start);
  for (const std::string& noise : {std::string("nncompress: error: "), kModels.string() + "/"})
    for (size_t at; (at = line.find(noise)) != std::string::npos;) line.erase(at, noise.size());
  for (char& c : line)
    if (c == '|') c = '/';
  return line.size() > 240 ? line.substr(0, 237) + "..." : line;
}

// Adds a finding to a status cell ("not run" until the first).
void note(std::string& cell, const std::string& finding) {
  cell = cell == "not run" ? finding : cell + "; " + finding;
}

class PrintTable : public ::testing::Environment {
 public:
  void TearDown() override {
    if (table().empty()) return;
    std::printf("\n[ real models table ]\n");
    std::printf(
        "| model | report: params / MACs | prune 50%%: params | MACs kept | groups pruned / "
        "prunable / all | rel. error vs oracle (ORT) | prune | quantize int8 QDQ | output "
        "cosine vs float (ORT, min) | top-1 agreement (classifiers) | kept float by "
        "--auto-exclude: "
        "inputs / layers of all; size ratio | fine-tune: rel. L2 to the original (ORT), pruned "
        "30%% -> fine-tuned "
        "| compress by fidelity (drop <= 1, 2x): size ratio, fidelity claimed / in ORT |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (const RealModel& m : kRealModels) {
      auto it = table().find(m.file);
      if (it == table().end()) continue;
      const Row& r = it->second;
      std::printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
                  m.file.c_str(), r.report.c_str(), r.params.c_str(), r.macs_kept.c_str(),
                  r.groups.c_str(), r.oracle.c_str(), r.prune.c_str(), r.quantize.c_str(),
                  r.cosine.c_str(), r.agreement.c_str(), r.float_layers.c_str(), r.finetune.c_str(),
                  r.compress.c_str());
    }
    std::printf("[ end real models table ]\n");
  }
};
[[maybe_unused]] const auto* const kPrintTable =
    ::testing::AddGlobalTestEnvironment(new PrintTable);

// ---------------------------------------------------------------------------------------------
// Inputs: each photo, cropped, then preprocessed by the data readers (src/data).

// [1, C, h, w] raw 0..255 values of the box, in the model's channel order.
StatusOr<Tensor> cropPhoto(const Photo& photo, Channels channels) {
  data::Preprocess raw;
  raw.scale = 1.f;
  raw.channels = channels;
  NNC_ASSIGN_OR_RETURN(auto reader, data::openData((kPhotos / photo.file).string(), raw));
  NNC_ASSIGN_OR_RETURN(Tensor full, reader->readBatch(0, 1));
  if (photo.box.height == 0) return full;
  const int64_t c = full.dim(1), h = full.dim(2), w = full.dim(3);
  const Box& b = photo.box;
  if (b.top + b.height > h || b.left + b.width > w)
    return invalidArgument(photo.file + ": box outside the photo");
  Tensor out(DType::kFloat32, Shape{1, c, b.height, b.width});
  auto src = full.data<float>();
  auto dst = out.mutableData<float>();
  for (int64_t k = 0; k < c; ++k)
    for (int64_t y = 0; y < b.height; ++y)
      for (int64_t x = 0; x < b.width; ++x)
        dst[(k * b.height + y) * b.width + x] = src[(k * h + b.top + y) * w + b.left + x];
  return out;
}

// [1, C, H, W]: the crop resized and normalised as the model expects.
StatusOr<Tensor> modelInput(const RealModel& m, const Photo& photo, const TempDir& dir) {
  NNC_ASSIGN_OR_RETURN(Tensor crop, cropPhoto(photo, m.channels));
  const auto file = dir / "crop.npy";
  NNC_RETURN_IF_ERROR(data::writeNpy(file.string(), crop));
  data::Preprocess pre;
  pre.scale = m.scale;
  pre.size = std::pair{m.height, m.width};
  pre.mean = m.mean;
  pre.std = m.std;
  NNC_ASSIGN_OR_RETURN(auto reader, data::openData(file.string(), pre));
  return reader->readBatch(0, 1);
}

// Samples [n_i, ...] -> [sum n_i, ...].
Tensor concatBatch(const std::vector<Tensor>& samples) {
  Shape shape = samples[0].shape();
  shape[0] = 0;
  for (const Tensor& s : samples) shape[0] += s.dim(0);
  Tensor out(DType::kFloat32, shape);
  auto dst = out.mutableData<float>();
  size_t at = 0;
  for (const Tensor& s : samples)
    for (float v : s.data<float>()) dst[at++] = v;
  return out;
}

// Graph inputs that are not initializers (IR 4 files list every weight as an input too).
std::vector<const Value*> dataInputs(const Graph& g) {
  std::vector<const Value*> inputs;
  for (const Value* v : g.inputs())
    if (!v->isInitializer()) inputs.push_back(v);
  return inputs;
}

// What a test needs about one model: its input name, the batches to feed ORT (one per photo when
// the batch dim is fixed, else one batch of every photo) and the original's outputs on them.
struct Fixture {
  fs::path path;
  std::string input_name;
  std::vector<Tensor> batches;
  std::vector<std::vector<Tensor>> reference;  // per batch, the original's outputs in ORT
  fs::path photos;  // every batch in one .npy (float, so the CLI applies no further scaling)
};

void prepare(const RealModel& m, const TempDir& dir, Fixture& f) {
  ASSERT_TRUE(testing::ortAvailable()) << "onnxruntime-node missing: run tools/bootstrap.sh";
  ASSERT_TRUE(fs::exists(kPhotos / "astronaut.png"))
      << kPhotos << " has no photos: apt-get install python3-skimage (tools/bootstrap.sh)";
  f.path = kModels / m.file;
  ASSERT_TRUE(fs::exists(f.path)) << f.path << " missing";
  auto model = loadModel(f.path);
  ASSERT_TRUE(model.isOk()) << model.status().toString();
  const std::vector<const Value*> inputs = dataInputs(*model->graph);
  ASSERT_EQ(inputs.size(), 1u);
  const Value* input = inputs[0];
  f.input_name = input->name();
  const auto& dims = input->type().shape;
  ASSERT_TRUE(dims && dims->size() == 4) << m.file << ": expected an NCHW input";
  const bool batch_fixed = (*dims)[0].isKnown();

  std::vector<Tensor> samples;
  for (const Photo& p : *m.photos) {
    auto t = modelInput(m, p, dir);
    ASSERT_TRUE(t.isOk()) << p.label << ": " << t.status().toString();
    samples.push_back(std::move(t).value());
  }
  f.photos = dir / "photos.npy";
  ASSERT_TRUE(data::writeNpy(f.photos.string(), concatBatch(samples)).isOk());
  if (batch_fixed)
    f.batches = std::move(samples);
  else
    f.batches = {concatBatch(samples)};
  for (const Tensor& b : f.batches) {
    auto out = testing::runOrt(f.path, {{f.input_name, b}}, dir);
    ASSERT_TRUE(out.isOk()) << "the original does not run in ORT: " << out.status().toString();
    f.reference.push_back(std::move(out).value());
  }
}

// Relative max error for float outputs; other dtypes must match exactly. 1 on shape mismatch.
double outputError(const Tensor& got, const Tensor& want) {
  if (got.shape() != want.shape() || got.dtype() != want.dtype()) return 1.0;
  if (want.dtype() == DType::kFloat32) return testing::relativeMaxError(got, want);
  return got.bytes() == want.bytes() ? 0.0 : 1.0;
}

double cosine(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != DType::kFloat32 || b.dtype() != DType::kFloat32)
    return std::nan("");
  double ab = 0, aa = 0, bb = 0;
  const auto x = a.data<float>(), y = b.data<float>();
  for (size_t i = 0; i < x.size(); ++i)
    ab += double(x[i]) * y[i], aa += double(x[i]) * x[i], bb += double(y[i]) * y[i];
  if (aa == 0 && bb == 0) return 1.0;
  return ab / std::sqrt(aa * bb);
}

// Fraction of rows (the last axis holds the classes) whose argmax agrees.
double top1Agreement(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != DType::kFloat32 || a.rank() == 0) return 0;
  const int64_t k = a.dim(a.rank() - 1), rows = k > 0 ? a.numel() / k : 0;
  int64_t same = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = a.data<float>().data() + r * k;
    const float* y = b.data<float>().data() + r * k;
    same += std::max_element(x, x + k) - x == std::max_element(y, y + k) - y;
  }
  return rows ? double(same) / double(rows) : 1.0;
}

// Largest difference, in degrees, of the softmax-expected angle (bin * 3 - 99) over the rows.
double maxExpectedAngleDiff(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != DType::kFloat32 || a.rank() == 0) return 1e9;
  const int64_t k = a.dim(a.rank() - 1), rows = k > 0 ? a.numel() / k : 0;
  auto expected = [k](const float* x) {
    const float top = *std::max_element(x, x + k);
    double sum = 0, weighted = 0;
    for (int64_t i = 0; i < k; ++i) {
      const double e = std::exp(double(x[i]) - top);
      sum += e;
      weighted += e * double(i);
    }
    return weighted / sum * 3.0 - 99.0;
  };
  double worst = 0;
  for (int64_t r = 0; r < rows; ++r)
    worst = std::max(worst, std::abs(expected(a.data<float>().data() + r * k) -
                                     expected(b.data<float>().data() + r * k)));
  return worst;
}

bool allFinite(const Tensor& t) {
  if (t.dtype() != DType::kFloat32) return true;
  for (float v : t.data<float>())
    if (!std::isfinite(v)) return false;
  return true;
}

// Runs `model` in ORT on every batch; fails the test (with ORT's message) when it does not run or
// an output's shape differs from the original's.
std::vector<std::vector<Tensor>> runAll(const fs::path& model, const Fixture& f, const TempDir& dir,
                                        std::string& failure) {
  std::vector<std::vector<Tensor>> all;
  for (size_t b = 0; b < f.batches.size(); ++b) {
    auto out = testing::runOrt(model, {{f.input_name, f.batches[b]}}, dir);
    if (!out.isOk()) {
      // Without the temp paths, which make the table unreadable.
      std::string message = out.status().message();
      for (const std::string& p : {"onnxruntime failed on " + model.string() + ": ",
                                   model.string() + ": ", model.string()})
        for (size_t at; (at = message.find(p)) != std::string::npos;) message.erase(at, p.size());
      failure = "ORT: " + message;
      return {};
    }
    if (out->size() != f.reference[b].size()) {
      failure = std::to_string(out->size()) + " outputs instead of " +
                std::to_string(f.reference[b].size());
      return {};
    }
    for (size_t o = 0; o < out->size(); ++o)
      if ((*out)[o].shape() != f.reference[b][o].shape()) {
        failure = "output " + std::to_string(o) + " changed shape";
        return {};
      }
    all.push_back(std::move(out).value());
  }
  return all;
}

// The oracle for every pruned group at once (tests/prune_oracle.h).
void zeroRemovedChannels(Graph& g, const ChannelAnalysis& analysis,
                         const std::map<int, std::vector<int64_t>>& removed) {
  std::vector<std::pair<const ChannelGroup*, std::vector<int64_t>>> drops;
  for (const auto& [group_id, dropped] : removed)
    drops.push_back({&analysis.groups[group_id], dropped});
  testing::zeroConsumerSlices(g, drops);
}

// gtest prints the parameter in failure messages.
void PrintTo(const RealModel& m, std::ostream* os) { *os << m.file; }

// Each test's model, its row of the table, a folder, and (after prepare) its photos and the
// original's outputs in ORT.
class RealModelsTest : public ::testing::TestWithParam<RealModel> {
 protected:
  const RealModel& m = GetParam();
  Row& row = table()[m.file];
  TempDir dir;
  Fixture f;
};

TEST_P(RealModelsTest, Report) {
  const auto path = kModels / m.file;
  auto r = testing::runCli("report " + testing::quote(path) + " --json");
  if (r.exit_code != 0)
    row.report = "exit " + std::to_string(r.exit_code) + ": " + firstLine(r.err);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  const int64_t params = j.value("params", int64_t{-1}), macs = j.value("macs", int64_t{-1});
  const int64_t bytes = static_cast<int64_t>(fs::file_size(path));
  row.report = count(params) + " / " + count(macs);
  std::printf("[ report ] %s: params %lld, MACs %lld, %zu layers, file %lld bytes\n",
              m.file.c_str(), (long long)params, (long long)macs, j["layers"].size(),
              (long long)bytes);
  EXPECT_EQ(j.value("file_bytes", int64_t{-1}), bytes);
  EXPECT_GT(macs, 0);
  // Convolutions reuse each weight at every position: MACs exceed weights. Only with a static
  // input: PP-OCR's H and W are dynamic, and MACs are then counted per position.
  auto model = loadModel(path);
  ASSERT_TRUE(model.isOk()) << model.status().toString();
  if (dataInputs(*model->graph).at(0)->staticShape()) {
    EXPECT_GT(macs, params) << "convolutional model with fewer MACs than weights";
  }
  // float32 weights: 4 bytes each, and the weights are most of the file.
  EXPECT_LE(params * 4, bytes) << "more float32 params than the file can hold";
  EXPECT_GE(params * 4, bytes / 2) << "params miss most of the file's weights";
  EXPECT_FALSE(j["layers"].empty());
}

TEST_P(RealModelsTest, PruneHalfMatchesZeroedConsumerOracle) {
  ASSERT_NO_FATAL_FAILURE(prepare(m, dir, f));
  const auto out = dir / "pruned.onnx";
  auto r = testing::runCli("prune " + testing::quote(f.path) + " -o " + testing::quote(out) +
                           " --ratio 0.5 --method l1 --exact-only --json");
  if (r.exit_code != 0) row.prune = "exit " + std::to_string(r.exit_code) + ": " + firstLine(r.err);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(fs::exists(out));
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;

  std::map<int, std::vector<int64_t>> removed;
  int prunable = 0, shrinkable = 0;
  std::set<std::string> reasons;
  for (const auto& g : j["groups"]) {
    if (g["prunable"].get<bool>()) {
      ++prunable;
      shrinkable += g["channels_before"].get<int64_t>() >= 2;
    } else
      reasons.insert(g.value("reason", ""));
    auto r_list = g["removed"].get<std::vector<int64_t>>();
    if (!r_list.empty()) removed[g["id"].get<int>()] = std::move(r_list);
  }
  const int64_t params_before = j["before"]["params"], params_after = j["after"]["params"];
  row.params = count(params_before) + " -> " + count(params_after);
  row.macs_kept = fixed(100 * j["macs_kept"].get<double>(), 1) + "%";
  row.groups = std::to_string(removed.size()) + " / " + std::to_string(prunable) + " / " +
               std::to_string(j["groups"].size());
  std::printf("[ prune ] %s: params %s, MACs kept %s, groups pruned/prunable/all %s\n",
              m.file.c_str(), row.params.c_str(), row.macs_kept.c_str(), row.groups.c_str());
  EXPECT_LT(params_after, params_before) << "pruning half the channels must shrink the model";
  if (params_after >= params_before) note(row.prune, "params grew");
  if (prunable == 0) {
    std::string why;
    for (const auto& s : reasons) why += (why.empty() ? "" : "; ") + s;
    note(row.prune, "0 prunable groups: " + firstLine(why));
  }
  // Every model has Conv -> (BN) -> activation -> Conv chains whose channels nothing else reads.
  EXPECT_GT(prunable, 0) << m.file << " has no prunable group; barriers:\n"
                         << [&] {
                              std::string s;
                              for (const auto& x : reasons) s += "  " + x + "\n";
                              return s;
                            }();
  EXPECT_EQ(removed.size(), static_cast<size_t>(shrinkable))
      << "--ratio 0.5 halves every prunable group of two channels or more";

  Status checked = checkModelFile(out);
  if (!checked.isOk())
    note(row.prune, "written, fails the ONNX checker: " + firstLine(checked.message()));
  EXPECT_TRUE(checked.isOk()) << checked.toString();
  std::string failure;
  const auto pruned = runAll(out, f, dir, failure);
  if (!failure.empty()) note(row.prune, "written, " + firstLine(failure));
  ASSERT_TRUE(failure.empty()) << failure;

  // The oracle: the original with the removed channels' consumer slices zeroed. The analysis
  // here must be the CLI's (same groups, same channel counts) for the ids to mean the same,
  // so it sees the shapes the CLI completes by running the model.
  auto zeroed = loadModel(f.path);
  ASSERT_TRUE(zeroed.isOk());
  exec::completeShapesByRunning(*zeroed);
  const ChannelAnalysis analysis = analyzeChannels(*zeroed);
  ASSERT_EQ(analysis.groups.size(), j["groups"].size());
  for (const auto& g : j["groups"])
    ASSERT_EQ(analysis.groups[g["id"].get<int>()].channels, g["channels_before"].get<int64_t>());
  zeroRemovedChannels(*zeroed->graph, analysis, removed);
  const auto oracle_path = dir / "zeroed.onnx";
  ASSERT_TRUE(saveModel(*zeroed, oracle_path).isOk());
  const auto want = runAll(oracle_path, f, dir, failure);
  ASSERT_TRUE(failure.empty()) << "oracle: " << failure;

  double worst = 0;
  for (size_t b = 0; b < pruned.size(); ++b)
    for (size_t o = 0; o < pruned[b].size(); ++o) {
      const double err = outputError(pruned[b][o], want[b][o]);
      EXPECT_LE(err, kOracleTolerance)
          << "batch " << b << " (" << (*m.photos)[b % m.photos->size()].label << "), output " << o
          << ": pruned differs from the zeroed original";
      worst = std::max(worst, err);
    }
  row.oracle = sci(worst);
  if (worst > kOracleTolerance) note(row.prune, "WRONG: differs from the oracle");
  if (row.prune == "not run") row.prune = "ok";
  std::printf("[ prune ] %s: max relative error vs the zeroed-consumer oracle in ORT %s\n",
              m.file.c_str(), row.oracle.c_str());
}

TEST_P(RealModelsTest, QuantizeInt8QdqRunsInOrt) {
  ASSERT_NO_FATAL_FAILURE(prepare(m, dir, f));
  // Calibration: the same preprocessed photos.
  const auto out = dir / "quantized.onnx";
  auto r = testing::runCli("quantize " + testing::quote(f.path) + " -o " + testing::quote(out) +
                           " --calib " + testing::quote(f.photos) + " --json");
  if (r.exit_code != 0)
    row.quantize = "exit " + std::to_string(r.exit_code) + ": " + firstLine(r.err);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j.value("converted_from_opset", int64_t{-1}), 9) << "all eight models are opset 9";
  if (j.value("converted_from_opset", int64_t{-1}) != 9)
    note(row.quantize, "JSON lacks converted_from_opset 9");

  Status checked = checkModelFile(out);
  if (!checked.isOk())
    note(row.quantize, "written, fails the ONNX checker: " + firstLine(checked.message()));
  EXPECT_TRUE(checked.isOk()) << checked.toString();
  std::string failure;
  const auto got = runAll(out, f, dir, failure);
  if (!failure.empty()) note(row.quantize, "written, " + firstLine(failure));
  ASSERT_TRUE(failure.empty()) << failure;

  double worst = 1, agreement = 1, angle_diff = 0;
  for (size_t b = 0; b < got.size(); ++b)
    for (size_t o = 0; o < got[b].size(); ++o) {
      angle_diff = std::max(angle_diff, maxExpectedAngleDiff(got[b][o], f.reference[b][o]));
      EXPECT_TRUE(allFinite(got[b][o])) << "output " << o << " has NaN or Inf";
      const double c = cosine(got[b][o], f.reference[b][o]);
      if (!std::isnan(c)) worst = std::min(worst, c);
      agreement = std::min(agreement, top1Agreement(got[b][o], f.reference[b][o]));
    }
  row.cosine = fixed(worst, 4);
  // Layers kept with a float input (weights quantized) appear in `layers` too; whole float
  // layers do not.
  int inputs = 0, whole = 0;
  for (const auto& k : j["auto_exclude"]["float_layers"])
    ++(k.value("kept_float", std::string()) == "input" ? inputs : whole);
  const double smaller = double(j["before"].value("file_bytes", int64_t{0})) /
                         double(std::max<int64_t>(1, j["after"].value("file_bytes", int64_t{0})));
  row.float_layers = std::to_string(inputs) + " / " + std::to_string(whole) + " of " +
                     std::to_string(whole + j["layers"].size()) + "; " + fixed(smaller, 2) + "x";
  // int8 weights: the file must shrink, whatever auto-exclude keeps float (fr_age once grew
  // 201 KB -> 258 KB: its replaced float weights stayed, listed as graph inputs).
  EXPECT_GT(smaller, 1.5) << "quantized file barely smaller than the float one";
  if (kClassifiers.count(m.file)) {
    row.agreement = fixed(100 * agreement, 1) + "%";
    EXPECT_EQ(agreement, 1.0) << "int8 top-1 differs from float on some photo";
  } else if (kBinnedAngles.count(m.file)) {
    row.agreement = fixed(100 * agreement, 1) + "% (not gated; expected angle off by up to " +
                    fixed(angle_diff, 2) + " deg)";
  } else if (kReportAgreement.count(m.file)) {
    row.agreement = fixed(100 * agreement, 1) + "% per step (not gated)";
  }
  if (worst < kMinQuantCosine) note(row.quantize, "outputs far from the float model's");
  if (row.quantize == "not run") row.quantize = "ok";
  std::printf("[ quantize ] %s: min output cosine vs the float model in ORT %s\n", m.file.c_str(),
              row.cosine.c_str());
  EXPECT_GE(worst, kMinQuantCosine) << "int8 QDQ output far from the float model's";
}

// Parameter gradients of one forward/backward on `x`, with the same output gradients each time.
StatusOr<std::vector<train::Parameter>> parameterGrads(const Model& model, const Tensor& x,
                                                       bool bf16) {
  NNC_ASSIGN_OR_RETURN(
      auto tape, train::GradientTape::create(model, {.num_threads = 2, .bf16_conv_grads = bf16}));
  NNC_ASSIGN_OR_RETURN(std::vector<Tensor> y, tape->forward({x}));
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (Tensor& t : y)
    for (float& v : t.mutableData<float>()) v = u(rng);
  tape->zeroGrad();
  NNC_RETURN_IF_ERROR(tape->backward(std::move(y)));
  return tape->parameters();
}

double relativeL2(const Tensor& got, const Tensor& want) {
  double d = 0, n = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double w = want.data<float>()[i], g = got.data<float>()[i];
    d += (g - w) * (g - w), n += w * w;
  }
  return n > 0 ? std::sqrt(d / n) : std::sqrt(d);
}

TEST_P(RealModelsTest, Bf16ConvGradientsStayNearFloat32) {
  if (!train::bf16ConvGradsAvailable()) GTEST_SKIP() << "CPU without AVX-512 BF16";
  ASSERT_NO_FATAL_FAILURE(prepare(m, dir, f));
  auto model = loadModel(f.path);
  ASSERT_TRUE(model.isOk()) << model.status().toString();
  train::hoistConstantWeights(*model);  // as finetune does (PP-OCR keeps weights in Constants)
  auto fp32 = parameterGrads(*model, f.batches[0], false);  // every op here has a backward
  ASSERT_TRUE(fp32.isOk()) << fp32.status().toString();
  auto bf16 = parameterGrads(*model, f.batches[0], true);
  ASSERT_TRUE(bf16.isOk()) << bf16.status().toString();
  ASSERT_EQ(bf16->size(), fp32->size());
  double worst = 0;
  int convs = 0;
  for (const auto& n : model->graph->nodes()) {
    if (n->opType() != "Conv") continue;
    for (size_t p = 0; p < fp32->size(); ++p) {
      if ((*fp32)[p].name != n->input(1)->name()) continue;
      ++convs;
      worst = std::max(worst, relativeL2((*bf16)[p].grad, (*fp32)[p].grad));
    }
  }
  std::printf("[ bf16 grads ] %s: %d Conv weights, worst relative L2 error %.2e\n", m.file.c_str(),
              convs, worst);
  EXPECT_GT(convs, 0);
  EXPECT_GT(worst, 0.0) << "bf16 path not taken";
  EXPECT_LT(worst, 3e-2);
}

// Prune 30% of the channels (l1, no recovery, so there is something to win back), then fine-tune
// by distillation from the original on the photos: the result passes the checker, runs in ORT
// with the original's output shapes, and its outputs in ORT are closer to the original's than
// the pruned model's were (on those photos: the training data). Every op of the eight models has
// a backward, so each must train.
TEST_P(RealModelsTest, PrunedThenFinetunedRunsInOrtCloserToTheOriginal) {
  ASSERT_NO_FATAL_FAILURE(prepare(m, dir, f));
  const auto pruned = dir / "pruned.onnx", tuned = dir / "tuned.onnx";
  auto r = testing::runCli("prune " + testing::quote(f.path) + " -o " + testing::quote(pruned) +
                           " --ratio 0.3 --method l1 --exact-only");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const int64_t batch = f.batches.size() > 1 ? 1 : f.batches[0].dim(0);  // fixed batch of 1
  r = testing::runCli("finetune " + testing::quote(pruned) + " -o " + testing::quote(tuned) +
                      " --teacher " + testing::quote(f.path) + " --data " +
                      testing::quote(f.photos) + " --epochs 15 --batch " + std::to_string(batch) +
                      " --warmup 0 --loss " + m.finetune_loss + " --json");
  if (r.exit_code != 0)
    row.finetune = "exit " + std::to_string(r.exit_code) + ": " + firstLine(r.err);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Status checked = checkModelFile(tuned);
  EXPECT_TRUE(checked.isOk()) << checked.toString();
  std::string failure;
  const auto before = runAll(pruned, f, dir, failure);
  ASSERT_TRUE(failure.empty()) << failure;
  const auto after = runAll(tuned, f, dir, failure);
  ASSERT_TRUE(failure.empty()) << failure;
  double err_before = 0, err_after = 0;
  int outputs = 0;
  for (size_t b = 0; b < after.size(); ++b)
    for (size_t o = 0; o < after[b].size(); ++o, ++outputs) {
      ASSERT_EQ(after[b][o].shape(), f.reference[b][o].shape());
      EXPECT_TRUE(allFinite(after[b][o]));
      err_before += relativeL2(before[b][o], f.reference[b][o]);
      err_after += relativeL2(after[b][o], f.reference[b][o]);
    }
  err_before /= outputs, err_after /= outputs;
  const auto j = nlohmann::json::parse(r.out)["finetune"];
  // The loss that ran: kl on the logits before a final Softmax, kl on the output, or mse.
  const std::string loss =
      j["loss"].get<std::string>() + (j["softmax_logits"].get<int>() > 0 ? " on the logits" : "");
  row.finetune = fixed(err_before, 3) + " -> " + fixed(err_after, 3) + " (" +
                 std::to_string(j["steps"].get<int64_t>()) + " steps, " + loss + ")";
  if (!checked.isOk()) row.finetune += "; fails the ONNX checker";
  std::printf("[ finetune ] %s: relative L2 error vs the original in ORT %s\n", m.file.c_str(),
              row.finetune.c_str());
  EXPECT_LT(err_after, err_before);
}

// 1 - the relative squared error of each output over every batch, averaged over the outputs: what
// `compress --quality fidelity` measures in nncompress's executor.
double fidelity(const std::vector<std::vector<Tensor>>& got,
                const std::vector<std::vector<Tensor>>& want) {
  double error = 0;
  const size_t outputs = want.front().size();
  for (size_t o = 0; o < outputs; ++o) {
    double noise = 0, signal = 0;
    for (size_t b = 0; b < want.size(); ++b)
      for (int64_t i = 0; i < want[b][o].numel(); ++i) {
        const double w = want[b][o].data<float>()[i], g = got[b][o].data<float>()[i];
        noise += (g - w) * (g - w), signal += w * w;
      }
    error += signal > 0 ? noise / signal : (noise > 0 ? 1.0 : 0.0);
  }
  return 1 - error / outputs;
}

// compress without labels, judged by fidelity to the original (any model has it): the quality it
// claims, measured in nncompress's executor, holds in ONNX Runtime, within the demand.
TEST_P(RealModelsTest, CompressedFidelityHoldsInOrt) {
  ASSERT_NO_FATAL_FAILURE(prepare(m, dir, f));
  const auto out = dir / "compressed.onnx";
  auto r = testing::runCli("compress " + testing::quote(f.path) + " -o " + testing::quote(out) +
                           " --data " + testing::quote(f.photos) +
                           " --quality fidelity --max-accuracy-drop 1 --target-size 2x "
                           "--keep-best --json");
  if (r.exit_code > 1)
    row.compress = "exit " + std::to_string(r.exit_code) + ": " + firstLine(r.err);
  ASSERT_LE(r.exit_code, 1) << r.err;  // 1: 2x not reached within the demand; the best is kept
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["quality"], "fidelity");
  const double claimed = j["final"].get<double>();
  EXPECT_GE(claimed, 0.99 - 1e-9);
  Status checked = checkModelFile(out);
  EXPECT_TRUE(checked.isOk()) << checked.toString();
  std::string failure;
  const auto got = runAll(out, f, dir, failure);
  if (!failure.empty()) row.compress = "written, " + firstLine(failure);
  ASSERT_TRUE(failure.empty()) << failure;
  const double in_ort = fidelity(got, f.reference);
  row.compress = fixed(j["size_ratio"].get<double>(), 2) + "x" + (r.exit_code ? " (< 2x)" : "") +
                 ", " + fixed(claimed, 4) + " / " + fixed(in_ort, 4);
  if (!checked.isOk()) row.compress += "; fails the ONNX checker";
  std::printf("[ compress ] %s: %s\n", m.file.c_str(), row.compress.c_str());
  EXPECT_NEAR(in_ort, claimed, 0.005) << "the fidelity compress claims does not hold in ORT";
}

std::string paramName(const ::testing::TestParamInfo<RealModel>& info) {
  std::string name = fs::path(info.param.file).stem().string();
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(SharedRealModels, RealModelsTest, ::testing::ValuesIn(kRealModels),
                         paramName);

}  // namespace
}  // namespace nnc
