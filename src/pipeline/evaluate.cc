#include "nncompress/pipeline/evaluate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "nncompress/analysis/fidelity_taps.h"
#include "nncompress/train/softmax_heads.h"

namespace nnc {
namespace {

// Top-k classes of row `r` of a [N, classes] float tensor.
std::vector<int64_t> topK(const float* row, int64_t classes, int k) {
  std::vector<int64_t> idx(classes);
  std::iota(idx.begin(), idx.end(), 0);
  k = std::min<int>(k, static_cast<int>(classes));
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int64_t a, int64_t b) {
    return row[a] > row[b] || (row[a] == row[b] && a < b);
  });
  idx.resize(k);
  return idx;
}

// The top class of a row (the first of equal scores, as topK).
int64_t argmax(const float* row, int64_t classes) {
  return std::max_element(row, row + classes) - row;
}

// How an output holds class scores: `rows` rows of `classes` scores per sample. One row for
// [N, K] (or [N, K, 1, 1]); with kLastAxis one per position along the last axis. rows 0: none (a
// regression's [N, 1] always agrees, a map's [N, C, H, W] argmax says nothing).
struct ClassRows {
  int64_t rows = 0, classes = 0;
};

ClassRows classRows(const Tensor& y, EvalOptions::Classes layout) {
  if (y.dtype() != DType::kFloat32 || y.rank() < 2 || y.dim(0) == 0) return {};
  const int64_t per_sample = y.numel() / y.dim(0);
  const bool last_axis = layout == EvalOptions::Classes::kLastAxis;
  const int64_t classes = last_axis ? y.dim(y.rank() - 1) : per_sample;
  if (classes < 2 || (!last_axis && y.dim(1) != per_sample)) return {};
  return {per_sample / classes, classes};
}

std::vector<ClassRows> classRowsOf(const std::vector<Tensor>& outputs, const EvalOptions& options) {
  std::vector<ClassRows> out;
  for (size_t k = 0; k < outputs.size(); ++k)
    out.push_back(classRows(outputs[k], k < options.classes.size()
                                            ? options.classes[k]
                                            : EvalOptions::Classes::kWholeSample));
  return out;
}

std::string describeOutputs(const exec::Executor& model, const std::vector<Tensor>& outputs) {
  std::string text;
  for (size_t k = 0; k < outputs.size() && k < model.outputs().size(); ++k)
    text +=
        (k ? ", '" : "'") + model.outputs()[k]->name() + "' " + shapeToString(outputs[k].shape());
  return text;
}

bool sameShapes(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const Tensor& x, const Tensor& y) { return x.shape() == y.shape(); });
}

// Per output: the reference's summed squares and the summed squared difference.
struct OutputError {
  double signal = 0, noise = 0;
};

void addOutputErrors(const std::vector<Tensor>& got, const std::vector<Tensor>& want,
                     std::vector<OutputError>& errors) {
  errors.resize(got.size());
  for (size_t k = 0; k < got.size(); ++k) {
    if (got[k].dtype() != DType::kFloat32) continue;
    const auto a = got[k].data<float>(), b = want[k].data<float>();
    for (size_t j = 0; j < a.size(); ++j) {
      errors[k].signal += double(b[j]) * b[j];
      errors[k].noise += (double(a[j]) - b[j]) * (double(a[j]) - b[j]);
    }
  }
}

// 1 - the relative squared error averaged over outputs (an output whose reference is all zeros
// counts as exact when it is zero too, else as wholly wrong).
double fidelityOf(const std::vector<OutputError>& errors) {
  double sum = 0;
  for (const OutputError& e : errors)
    sum += e.signal > 0 ? e.noise / e.signal : (e.noise > 0 ? 1.0 : 0.0);
  return errors.empty() ? 0 : 1 - sum / errors.size();
}

// Sample i's agreement: the share of its rows whose top-1 agrees, averaged over the outputs that
// hold class scores.
double sampleAgreement(const std::vector<Tensor>& got, const std::vector<Tensor>& want,
                       const std::vector<ClassRows>& layout, int64_t i) {
  double sum = 0;
  int outputs = 0;
  for (size_t k = 0; k < got.size(); ++k) {
    const auto [rows, classes] = layout[k];
    if (rows == 0) continue;
    const float* a = got[k].data<float>().data() + i * rows * classes;
    const float* b = want[k].data<float>().data() + i * rows * classes;
    int64_t agreeing = 0;
    for (int64_t r = 0; r < rows; ++r)
      agreeing += argmax(a + r * classes, classes) == argmax(b + r * classes, classes);
    sum += double(agreeing) / rows;
    ++outputs;
  }
  return outputs ? sum / outputs : 0;
}

}  // namespace

std::vector<EvalOptions::Classes> classesOf(const Model& model) {
  std::vector<EvalOptions::Classes> out;
  for (const Value* v : model.graph->outputs())
    out.push_back(train::lastAxisSoftmax(model, v) ? EvalOptions::Classes::kLastAxis
                                                   : EvalOptions::Classes::kWholeSample);
  return out;
}

int64_t effectiveBatch(const exec::Executor& executor, const data::SampleReader& reader,
                       int64_t requested) {
  if (reader.maxBatch() == 1) return 1;
  const Value* in = executor.inputs().front();
  if (in->type().shape && !in->type().shape->empty() && (*in->type().shape)[0].isKnown())
    return (*in->type().shape)[0].value;
  return std::max<int64_t>(1, requested);
}

Status checkDataFitsModel(const exec::Executor& executor, const data::SampleReader& reader) {
  // Several inputs or integer ones: the data was bound to them by name and type
  // (data::feedModelInputs) and the executor checks every feed's shape.
  if (executor.inputs().empty()) return unsupported("the model has no inputs to feed");
  const Value* in = executor.inputs().front();
  if (executor.inputs().size() != 1 || in->dtype() != DType::kFloat32) return Status::ok();
  const Shape sample = reader.sampleShape();
  if (in->type().shape) {
    const auto& dims = *in->type().shape;
    const size_t axis0 = reader.maxBatch() == 1 ? 0 : 1;  // unbatched: a sample is the input
    bool fits = dims.size() == sample.size() + axis0;
    for (size_t i = 0; fits && i < sample.size(); ++i)
      if (dims[i + axis0].isKnown() && dims[i + axis0].value != sample[i]) fits = false;
    if (!fits)
      return invalidArgument("samples of shape " + shapeToString(sample) +
                             " do not fit the model input '" + in->name() + "' " +
                             in->type().toString() +
                             " (resize, crop or convert the samples to fit)");
  }
  return Status::ok();
}

// The values to compare past a selection (fidelity_taps.h): `reference`'s taps when this graph
// computes them all, so both models hand over the same values even where quantization rerouted
// what the selection reads; else its own (a QOperator file no longer has the float values).
std::vector<std::string> tapsOf(const Graph& graph, const Graph* reference) {
  if (reference) {
    std::vector<std::string> taps = fidelityTaps(*reference);
    if (std::all_of(taps.begin(), taps.end(),
                    [&](const std::string& t) { return graph.findValue(t) != nullptr; }))
      return taps;
  }
  return fidelityTaps(graph);
}

// The graph outputs, or past a selection such as a NonMaxSuppression the values it selects from:
// the selected lists change length between two models and hold no sample axis.
StatusOr<std::vector<Tensor>> runCompared(exec::Executor& ex, std::vector<Tensor> inputs,
                                          bool selection_inputs, const Graph* reference) {
  const Graph* graph = ex.outputs().empty() ? nullptr : ex.outputs().front()->graph();
  if (!selection_inputs || !graph || !outputsFollowSelection(*graph))
    return ex.run(std::move(inputs));
  return ex.runValues(std::move(inputs), tapsOf(*graph, reference));
}

Status runBatches(exec::Executor& model, data::SampleReader& reader, const EvalOptions& options,
                  const std::function<Status(int64_t, int64_t, std::vector<Tensor>&)>& sink) {
  NNC_RETURN_IF_ERROR(checkDataFitsModel(model, reader));
  const int64_t total = options.limit >= 0 ? std::min(options.limit, reader.size()) : reader.size();
  const int64_t batch = effectiveBatch(model, reader, options.batch);
  int64_t index = 0;
  for (int64_t start = 0; start < total; start += batch, ++index) {
    const int64_t count = std::min(batch, total - start);
    if (count != batch && batch != options.batch && model.inputs().front()->type().shape &&
        (*model.inputs().front()->type().shape)[0].isKnown())
      break;  // a fixed-batch model cannot take the short tail
    NNC_ASSIGN_OR_RETURN(std::vector<Tensor> inputs, reader.readFeeds(start, count));
    const auto run_start = std::chrono::steady_clock::now();
    NNC_ASSIGN_OR_RETURN(
        std::vector<Tensor> outputs,
        runCompared(model, std::move(inputs), options.selection_inputs, options.taps_from));
    if (options.run_seconds && count == batch)
      options.run_seconds->push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count());
    NNC_RETURN_IF_ERROR(sink(index, start, outputs));
    if (options.progress) options.progress(start + count, total);
  }
  return Status::ok();
}

namespace {

// Running sums over the evaluated samples.
class Tally {
 public:
  Tally(const std::vector<int64_t>* labels, const EvalOptions& options)
      : labels_(labels), options_(options) {}

  // Checks that `outputs` hold what the measures need, then counts their samples (the first is
  // sample `start` of the data) against the labels and the reference's outputs, if any.
  Status add(const exec::Executor& model, const std::vector<Tensor>& outputs,
             const std::vector<Tensor>* reference, int64_t start, int64_t samples) {
    const Tensor& y = outputs.front();
    const std::vector<ClassRows> layout = classRowsOf(outputs, options_);
    class_scores_ =
        std::any_of(layout.begin(), layout.end(), [](const ClassRows& c) { return c.rows > 0; });
    if (options_.require_classes && !class_scores_)
      return unsupported("no output holds class scores (" + describeOutputs(model, outputs) +
                         "): top-1 agreement needs [N, K] scores with K >= 2, or a final "
                         "Softmax over the last axis");
    if (labels_ && layout.front().rows != 1)
      return unsupported("the labels give one class per sample, and the first output " +
                         shapeToString(y.shape()) + " does not hold one row of class scores");
    if (reference) addOutputErrors(outputs, *reference, output_errors_);
    const int64_t n = samples, per_sample = n ? y.numel() / n : 0;
    for (int64_t i = 0; i < n; ++i) {
      const float* row = y.data<float>().data() + i * per_sample;
      if (labels_) addLabelled(row, layout.front().classes, (*labels_)[start + i]);
      if (!reference) continue;
      agree_ += sampleAgreement(outputs, *reference, layout, i);
      addCompared(row, reference->front().data<float>().data() + i * per_sample, per_sample);
    }
    count_ += n;
    return Status::ok();
  }

  void finish(bool compared, EvalResult& r) const {
    r.count = count_;
    r.class_scores = class_scores_;
    if (labels_) {
      r.top1 = double(top1_) / count_;
      r.top5 = double(top5_) / count_;
    }
    if (!compared) return;
    if (class_scores_) r.agreement = agree_ / count_;
    r.fidelity = fidelityOf(output_errors_);
    r.cosine = cosine_sum_ / count_;
    r.sqnr_db =
        noise_ > 0 ? 10 * std::log10(signal_ / noise_) : std::numeric_limits<double>::infinity();
  }

  int64_t count() const { return count_; }

 private:
  void addLabelled(const float* row, int64_t classes, int64_t label) {
    const auto best = topK(row, classes, 5);
    if (!best.empty() && best[0] == label) ++top1_;
    if (std::find(best.begin(), best.end(), label) != best.end()) ++top5_;
  }

  // Cosine and SQNR of the first output.
  void addCompared(const float* row, const float* ref, int64_t size) {
    double dot = 0, na = 0, nb = 0;
    for (int64_t j = 0; j < size; ++j) {
      dot += double(row[j]) * ref[j];
      na += double(row[j]) * row[j];
      nb += double(ref[j]) * ref[j];
      signal_ += double(ref[j]) * ref[j];
      noise_ += (double(row[j]) - ref[j]) * (double(row[j]) - ref[j]);
    }
    cosine_sum_ += (na > 0 && nb > 0) ? dot / std::sqrt(na * nb) : (na == nb ? 1.0 : 0.0);
  }

  const std::vector<int64_t>* labels_;
  const EvalOptions& options_;
  int64_t count_ = 0, top1_ = 0, top5_ = 0;
  bool class_scores_ = false;
  double agree_ = 0, cosine_sum_ = 0, signal_ = 0, noise_ = 0;
  std::vector<OutputError> output_errors_;
};

double median(std::vector<double> xs) {
  const size_t mid = xs.size() / 2;
  std::nth_element(xs.begin(), xs.begin() + mid, xs.end());
  double m = xs[mid];
  if (xs.size() % 2 == 0) m = (m + *std::max_element(xs.begin(), xs.begin() + mid)) / 2;
  return m;
}

}  // namespace

StatusOr<EvalResult> evaluate(exec::Executor& model, data::SampleReader& reader,
                              const std::vector<int64_t>* labels, exec::Executor* reference,
                              const EvalOptions& options) {
  if (labels &&
      static_cast<int64_t>(labels->size()) <
          std::min<int64_t>(reader.size(), options.limit < 0 ? reader.size() : options.limit))
    return invalidArgument("there are " + std::to_string(labels->size()) + " labels for " +
                           std::to_string(reader.size()) + " samples");
  Tally tally(labels, options);
  double model_seconds = 0;
  std::vector<double> run_seconds;
  EvalOptions run_options = options;
  run_options.run_seconds = &run_seconds;
  run_options.selection_inputs = true;
  if (reference && !reference->outputs().empty())
    run_options.taps_from = reference->outputs().front()->graph();
  auto t0 = std::chrono::steady_clock::now();
  Status st = runBatches(
      model, reader, run_options,
      [&](int64_t, int64_t start, std::vector<Tensor>& outputs) -> Status {
        model_seconds +=
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const Tensor& y = outputs.front();
        if (y.dtype() != DType::kFloat32 || y.rank() < 1)
          return unsupported("the first output is not a float tensor");
        // Unbatched: one sample per run, whatever the outputs' first axis holds.
        const int64_t samples = reader.maxBatch() == 1 ? 1 : y.dim(0);
        std::optional<std::vector<Tensor>> ref_out;
        if (reference) {
          NNC_ASSIGN_OR_RETURN(std::vector<Tensor> in, reader.readFeeds(start, samples));
          NNC_ASSIGN_OR_RETURN(ref_out,
                               runCompared(*reference, std::move(in), true, run_options.taps_from));
          if (!sameShapes(*ref_out, outputs))
            return invalidArgument(
                "the reference model's outputs (" + describeOutputs(*reference, *ref_out) +
                ") differ from the model's (" + describeOutputs(model, outputs) + ")");
        }
        NNC_RETURN_IF_ERROR(
            tally.add(model, outputs, ref_out ? &*ref_out : nullptr, start, samples));
        t0 = std::chrono::steady_clock::now();
        return Status::ok();
      });
  if (!st.isOk()) return st;
  if (tally.count() == 0) return invalidArgument("no samples were evaluated");
  EvalResult r;
  tally.finish(reference != nullptr, r);
  r.images_per_second = model_seconds > 0 ? r.count / model_seconds : 0;
  if (!run_seconds.empty()) r.batch_ms_median = 1000 * median(std::move(run_seconds));
  return r;
}

}  // namespace nnc
