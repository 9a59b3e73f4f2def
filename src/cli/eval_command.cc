#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "data_options.h"
#include "nncompress/cli/commands.h"
#include "nncompress/data/npy.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/pipeline/evaluate.h"
#include "progress.h"

namespace nnc::cli {
namespace {

StatusOr<std::unique_ptr<exec::Executor>> openModel(const std::string& path, int threads,
                                                    bool strict, Model& storage) {
  LoadedModelInfo info;
  NNC_ASSIGN_OR_RETURN(storage, loadInputModel(path, strict, &info));
  exec::ExecutorOptions eo;
  eo.num_threads = threads;
  auto ex = exec::Executor::create(storage, eo);
  if (!ex.isOk()) return ex.status().withContext(path);
  return ex;
}

nlohmann::ordered_json number(const std::optional<double>& v) {
  if (!v) return nullptr;
  if (std::isinf(*v)) return "inf";
  return *v;
}

}  // namespace

Status runEval(const EvalCommandOptions& o) {
  if (o.data.data.empty()) return invalidArgument("eval needs --data SPEC");
  Model model, reference;
  NNC_ASSIGN_OR_RETURN(auto ex, openModel(o.model_path, o.threads, o.strict, model));
  std::unique_ptr<exec::Executor> ref_ex;
  if (!o.reference_path.empty()) {
    NNC_ASSIGN_OR_RETURN(ref_ex, openModel(o.reference_path, o.threads, o.strict, reference));
  }
  NNC_ASSIGN_OR_RETURN(auto reader, openReader(o.data, model));
  NNC_ASSIGN_OR_RETURN(std::optional<std::vector<int64_t>> labels, openLabels(o.data, *reader));
  Progress progress("eval");
  EvalOptions eo;
  eo.limit = o.limit;
  eo.batch = o.batch;
  eo.classes = classesOf(model);
  eo.progress = [&](int64_t done, int64_t total) { progress.update(done, total); };
  auto result = evaluate(*ex, *reader, labels ? &*labels : nullptr, ref_ex.get(), eo);
  if (!result.isOk()) return result.status().withContext(o.model_path);
  const EvalResult& r = *result;
  if (o.json) {
    nlohmann::ordered_json j;
    j["model"] = o.model_path;
    j["count"] = r.count;
    if (r.top1) j["top1"] = *r.top1;
    if (r.top5) j["top5"] = *r.top5;
    j["images_per_second"] = r.images_per_second;
    j["batch_ms_median"] = r.batch_ms_median;
    if (ref_ex) {
      j["reference"] = o.reference_path;
      j["agreement"] = number(r.agreement);
      j["cosine"] = number(r.cosine);
      j["sqnr_db"] = number(r.sqnr_db);
      j["fidelity"] = number(r.fidelity);
    }
    std::cout << j.dump(2) << "\n";
  } else {
    std::printf("samples     %lld\n", static_cast<long long>(r.count));
    if (r.top1)
      std::printf("top-1       %.2f%%\ntop-5       %.2f%%\n", 100 * *r.top1, 100 * *r.top5);
    if (ref_ex) {
      if (r.agreement)
        std::printf("agreement   %.2f%% (top-1 vs %s)\n", 100 * *r.agreement,
                    o.reference_path.c_str());
      else
        std::printf("agreement   - (no output holds class scores)\n");
      std::printf("cosine      %.6f\nSQNR        %.2f dB\n", *r.cosine, *r.sqnr_db);
      std::printf("fidelity    %.4f (1 - relative squared error, every output)\n", *r.fidelity);
    }
    std::printf("throughput  %.1f images/s (%d threads)\n", r.images_per_second, ex->numThreads());
  }
  return Status::ok();
}

Status runRun(const RunCommandOptions& o) {
  if (o.data.data.empty()) return invalidArgument("run needs --data SPEC");
  if (o.output_dir.empty()) return invalidArgument("run needs --output-dir DIR");
  Model model;
  NNC_ASSIGN_OR_RETURN(auto ex, openModel(o.model_path, o.threads, o.strict, model));
  NNC_ASSIGN_OR_RETURN(auto reader, openReader(o.data, model));
  std::error_code ec;
  std::filesystem::create_directories(o.output_dir, ec);
  if (ec) return ioError("cannot create output directory '" + o.output_dir + "': " + ec.message());
  // One file per output and batch: <output name>_<batch index>.npy (names made file-safe).
  std::vector<std::string> stems;
  for (const Value* v : ex->outputs()) {
    std::string s = v->name();
    for (char& c : s)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') c = '_';
    stems.push_back(s);
  }
  Progress progress("run");
  EvalOptions eo;
  eo.limit = o.limit;
  eo.batch = o.batch;
  eo.progress = [&](int64_t done, int64_t total) { progress.update(done, total); };
  int64_t files = 0, samples = 0;
  std::vector<std::string> written;
  Status st = runBatches(
      *ex, *reader, eo, [&](int64_t index, int64_t, std::vector<Tensor>& outputs) -> Status {
        if (!outputs.empty() && outputs[0].shape().size() > 0) samples += outputs[0].shape()[0];
        for (size_t i = 0; i < outputs.size(); ++i) {
          char suffix[32];
          std::snprintf(suffix, sizeof suffix, "_%05lld.npy", static_cast<long long>(index));
          const auto path = std::filesystem::path(o.output_dir) / (stems[i] + suffix);
          NNC_RETURN_IF_ERROR(data::writeNpy(path.string(), outputs[i]));
          written.push_back(path.string());
          ++files;
        }
        return Status::ok();
      });
  if (!st.isOk()) return st.withContext(o.model_path);
  if (o.json) {
    nlohmann::ordered_json j;
    j["model"] = o.model_path;
    j["output_dir"] = o.output_dir;
    j["samples"] = samples;
    j["files"] = written;
    std::cout << j.dump(2) << "\n";
  } else {
    std::printf("wrote %lld files to %s\n", static_cast<long long>(files), o.output_dir.c_str());
  }
  return Status::ok();
}

}  // namespace nnc::cli
