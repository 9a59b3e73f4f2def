#include "finetune_checkpoint.h"

#include <cstring>
#include <filesystem>
#include <fstream>

namespace nnc::internal {
namespace {

constexpr char kMagic[8] = {'N', 'N', 'C', 'F', 'T', '0', '0', '1'};

class Writer {
 public:
  void pod(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  void i64(int64_t v) { pod(&v, sizeof v); }
  void f64(double v) { pod(&v, sizeof v); }
  void str(const std::string& s) {
    i64(static_cast<int64_t>(s.size()));
    out_ += s;
  }
  void tensor(const Tensor& t) {
    i64(t.rank());
    for (int64_t d : t.shape()) i64(d);
    pod(t.bytes().data(), t.byteSize());
  }
  void tensors(const std::vector<Tensor>& ts) {
    i64(static_cast<int64_t>(ts.size()));
    for (const Tensor& t : ts) tensor(t);
  }
  std::string& bytes() { return out_; }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(const std::string& bytes) : in_(bytes) {}
  bool pod(void* p, size_t n) {
    if (pos_ + n > in_.size()) return false;
    std::memcpy(p, in_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  bool i64(int64_t& v) { return pod(&v, sizeof v); }
  bool f64(double& v) { return pod(&v, sizeof v); }
  bool str(std::string& s) {
    int64_t n = 0;
    if (!i64(n) || n < 0 || pos_ + n > in_.size()) return false;
    s.assign(in_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  bool tensor(Tensor& t) {
    int64_t rank = 0;
    if (!i64(rank) || rank < 0 || rank > 16) return false;
    Shape shape(rank);
    for (int64_t& d : shape)
      if (!i64(d) || d < 0) return false;
    const int64_t numel = shapeNumel(shape);
    if (numel < 0 || pos_ + numel * 4 > in_.size()) return false;
    t = Tensor(DType::kFloat32, shape);
    return pod(t.mutableBytes().data(), t.byteSize());
  }
  bool tensors(std::vector<Tensor>& ts) {
    int64_t n = 0;
    if (!i64(n) || n < 0 || n > (1 << 20)) return false;
    ts.resize(n);
    for (Tensor& t : ts)
      if (!tensor(t)) return false;
    return true;
  }
  bool done() const { return pos_ == in_.size(); }

 private:
  const std::string& in_;
  size_t pos_ = 0;
};

}  // namespace

std::string checkpointPath(const std::string& dir) {
  return (std::filesystem::path(dir) / "finetune.ckpt").string();
}

Status saveCheckpoint(const std::string& dir, const FinetuneCheckpoint& c) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status(StatusCode::kIoError, dir + ": cannot create directory: " + ec.message());
  Writer w;
  w.pod(kMagic, sizeof kMagic);
  w.i64(static_cast<int64_t>(c.seed));
  for (int64_t v : {c.samples, c.batch, c.epochs, c.epoch, c.step_in_epoch, c.global_step,
                    c.optimizer_steps, c.best_epoch})
    w.i64(v);
  w.f64(c.epoch_loss_sum);
  w.f64(c.best_metric);
  w.i64(static_cast<int64_t>(c.names.size()));
  for (const std::string& n : c.names) w.str(n);
  w.tensors(c.params);
  w.tensors(c.state);
  w.tensors(c.best_params);
  const std::string path = checkpointPath(dir), tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(w.bytes().data(), static_cast<std::streamsize>(w.bytes().size()));
    if (!out) return Status(StatusCode::kIoError, tmp + ": cannot write the checkpoint");
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Status(StatusCode::kIoError, path + ": cannot write: " + ec.message());
  return Status::ok();
}

StatusOr<bool> loadCheckpoint(const std::string& dir, FinetuneCheckpoint& c) {
  const std::string path = checkpointPath(dir);
  if (!std::filesystem::exists(path)) return false;
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) return Status(StatusCode::kIoError, path + ": cannot read");
  Reader r(bytes);
  char magic[8];
  int64_t seed = 0, names = 0;
  bool ok =
      r.pod(magic, sizeof magic) && std::memcmp(magic, kMagic, sizeof magic) == 0 && r.i64(seed);
  for (int64_t* v : {&c.samples, &c.batch, &c.epochs, &c.epoch, &c.step_in_epoch, &c.global_step,
                     &c.optimizer_steps, &c.best_epoch})
    ok = ok && r.i64(*v);
  ok = ok && r.f64(c.epoch_loss_sum) && r.f64(c.best_metric) && r.i64(names) && names >= 0 &&
       names < (1 << 20);
  if (ok) c.names.resize(names);
  for (std::string& n : c.names) ok = ok && r.str(n);
  ok = ok && r.tensors(c.params) && r.tensors(c.state) && r.tensors(c.best_params) && r.done();
  if (!ok) return invalidArgument(path + ": not a fine-tuning checkpoint, or truncated");
  c.seed = static_cast<uint64_t>(seed);
  return true;
}

}  // namespace nnc::internal
