// Einsum (12; unchanged through 21): a sum of products of the inputs, indexed by the labels of
// an Einstein-summation equation.
//
//   equation = term1,term2,...[->output]   (spaces ignored; letters a-z, A-Z, case sensitive)
//   output[out-labels] = sum over the other labels of  input1[term1] * input2[term2] * ...
//
// A letter repeated within one term takes a diagonal ("ii->i"). "..." stands for the leading
// (or middle) dims not named by letters; those dims of different inputs broadcast numpy-style,
// right-aligned. Size-1 dims of a letter broadcast against the other inputs' size too (as in
// numpy). Without "->", the output is the ellipsis dims followed by the letters that appear
// exactly once, in ASCII order (upper case first). With "->" but no "..." in the output, the
// ellipsis dims are summed. float32 accumulates in double; integers wrap modulo 2^64 like int64.
//
// Torch exports it for attention ("bhqd,bhkd->bhqk") and for relative-position terms.

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "kernels.h"
#include "tensor_util.h"

namespace nnc::exec {
namespace {

constexpr int kLetters = 52;  // labels 0..51 are 'A'..'Z','a'..'z'; ellipsis dims come after

bool isLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
// Label numbers in ASCII order, so sorting labels sorts letters as the implicit form requires.
int letterLabel(char c) { return c <= 'Z' ? c - 'A' : 26 + (c - 'a'); }
char labelLetter(int label) {
  return static_cast<char>(label < 26 ? 'A' + label : 'a' + (label - 26));
}

struct Term {
  std::vector<int> letters;  // letter labels in order, the ellipsis left out
  int ellipsis_at = -1;      // index in `letters` where "..." stands; -1 when absent
};

struct Equation {
  std::string text;
  std::vector<Term> inputs;
  Term output;
};

Status badEquation(const std::string& eq, const std::string& why) {
  return invalidModel("Einsum: equation '" + eq + "': " + why);
}

StatusOr<Term> parseTerm(std::string_view s, const std::string& eq) {
  Term t;
  for (size_t i = 0; i < s.size();) {
    if (isLetter(s[i])) {
      t.letters.push_back(letterLabel(s[i++]));
    } else if (s.substr(i, 3) == "...") {
      if (t.ellipsis_at >= 0) return badEquation(eq, "more than one ellipsis in a term");
      t.ellipsis_at = static_cast<int>(t.letters.size());
      i += 3;
    } else {
      return badEquation(eq, std::string("unexpected character '") + s[i] + "'");
    }
  }
  return t;
}

// The implicit output: ellipsis dims (if any input has them), then letters used exactly once.
Term implicitOutput(const std::vector<Term>& inputs) {
  std::vector<int> count(kLetters, 0);
  Term out;
  for (const Term& t : inputs) {
    for (int l : t.letters) ++count[l];
    if (t.ellipsis_at >= 0) out.ellipsis_at = 0;
  }
  for (int l = 0; l < kLetters; ++l)
    if (count[l] == 1) out.letters.push_back(l);
  return out;
}

Status checkOutput(const Equation& e) {
  std::vector<bool> in_inputs(kLetters, false), in_output(kLetters, false);
  for (const Term& t : e.inputs)
    for (int l : t.letters) in_inputs[l] = true;
  for (int l : e.output.letters) {
    const std::string name(1, labelLetter(l));
    if (in_output[l]) return badEquation(e.text, "label '" + name + "' repeats in the output");
    if (!in_inputs[l])
      return badEquation(e.text, "output label '" + name + "' appears in no input");
    in_output[l] = true;
  }
  return Status::ok();
}

StatusOr<Equation> parseEquation(const std::string& text) {
  Equation e;
  e.text = text;
  std::string eq;
  for (char c : text)
    if (c != ' ' && c != '\t' && c != '\n') eq += c;
  const size_t arrow = eq.find("->");
  const std::string lhs = eq.substr(0, arrow);
  if (lhs.find_first_of("->") != std::string::npos)
    return badEquation(text, "misplaced '-' or '>' in the inputs");
  for (size_t start = 0;;) {
    const size_t comma = lhs.find(',', start);
    NNC_ASSIGN_OR_RETURN(Term t,
                         parseTerm(std::string_view(lhs).substr(start, comma - start), text));
    e.inputs.push_back(std::move(t));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (arrow == std::string::npos) {
    e.output = implicitOutput(e.inputs);
  } else {
    const std::string rhs = eq.substr(arrow + 2);
    if (rhs.find_first_of(",->") != std::string::npos)
      return badEquation(text, "the output must be one term after a single '->'");
    NNC_ASSIGN_OR_RETURN(e.output, parseTerm(rhs, text));
  }
  NNC_RETURN_IF_ERROR(checkOutput(e));
  return e;
}

// ---- planning: label sizes and strides for the input shapes of one run ----

struct Loop {
  int64_t size = 1;
  std::vector<int64_t> strides;  // per input, in elements (0 where absent or broadcast)
};

struct Plan {
  Shape out_shape;
  std::vector<Loop> out_loops;  // output dims in order
  std::vector<Loop> sum_loops;  // summed labels, the innermost loop last; never empty
};

// A term's labels dim by dim for an input of `rank` whose ellipsis covers `ell` of the
// `total_ell` ellipsis labels (right-aligned, as numpy broadcasts).
std::vector<int> expandTerm(const Term& t, int ell, int total_ell) {
  std::vector<int> labels;
  for (size_t i = 0; i <= t.letters.size(); ++i) {
    if (static_cast<int>(i) == t.ellipsis_at)
      for (int k = 0; k < ell; ++k) labels.push_back(kLetters + total_ell - ell + k);
    if (i < t.letters.size()) labels.push_back(t.letters[i]);
  }
  return labels;
}

std::string labelName(int label) {
  return label < kLetters ? std::string("label '") + labelLetter(label) + "'"
                          : "ellipsis dim " + std::to_string(label - kLetters);
}

// Number of dims each input's ellipsis covers; fails when a term does not fit its input's rank.
StatusOr<std::vector<int>> ellipsisDims(const Equation& e, std::span<const Tensor* const> in) {
  std::vector<int> ell(in.size(), 0);
  for (size_t i = 0; i < in.size(); ++i) {
    const Term& t = e.inputs[i];
    const int letters = static_cast<int>(t.letters.size()), rank = in[i]->rank();
    if (t.ellipsis_at < 0 ? rank != letters : rank < letters)
      return invalidModel("Einsum: term " + std::to_string(i) + " of '" + e.text + "' has " +
                          std::to_string(letters) + " labels but input " + std::to_string(i) +
                          " has rank " + std::to_string(rank));
    ell[i] = rank - letters;
  }
  return ell;
}

// Merges input `i`'s dims into `size` (-1: label unseen); repeats within the input must agree
// exactly (a diagonal), sizes across inputs must agree or be 1.
Status mergeSizes(const Tensor& t, const std::vector<int>& labels, size_t i,
                  std::vector<int64_t>& size) {
  std::vector<int64_t> local(size.size(), -1);
  for (size_t d = 0; d < labels.size(); ++d) {
    const int l = labels[d];
    const int64_t s = t.dim(static_cast<int>(d));
    if (local[l] >= 0 && local[l] != s)
      return invalidModel("Einsum: " + labelName(l) + " repeats in input " + std::to_string(i) +
                          " over dims of sizes " + std::to_string(local[l]) + " and " +
                          std::to_string(s));
    local[l] = s;
  }
  for (size_t l = 0; l < size.size(); ++l) {
    if (local[l] < 0) continue;
    if (size[l] < 0 || size[l] == 1) {
      size[l] = local[l];
    } else if (local[l] != 1 && local[l] != size[l]) {
      return invalidModel("Einsum: " + labelName(static_cast<int>(l)) + " has size " +
                          std::to_string(size[l]) + " in one input and " +
                          std::to_string(local[l]) + " in input " + std::to_string(i));
    }
  }
  return Status::ok();
}

// Adds input i's element strides to strides[label][i]; a repeated label sums its dims' strides
// (walking the diagonal), a size-1 dim adds nothing (broadcast).
void addStrides(const Tensor& t, const std::vector<int>& labels, size_t i,
                std::vector<std::vector<int64_t>>& strides) {
  const std::vector<int64_t> contiguous = contiguousStrides(t.shape());
  for (size_t d = 0; d < labels.size(); ++d)
    if (t.dim(static_cast<int>(d)) != 1) strides[labels[d]][i] += contiguous[d];
}

// Inputs whose stride is neither 0 nor 1: fewer is a cheaper innermost loop.
int scatteredReads(const Loop& loop) {
  int n = 0;
  for (int64_t s : loop.strides) n += s != 0 && s != 1;
  return n;
}

std::vector<Loop> sumLoops(const std::vector<int64_t>& size, const std::vector<bool>& in_output,
                           const std::vector<std::vector<int64_t>>& strides, size_t inputs) {
  std::vector<Loop> loops;
  for (size_t l = 0; l < size.size(); ++l)
    if (size[l] >= 0 && !in_output[l] && size[l] != 1)  // size-1 loops change nothing
      loops.push_back({size[l], strides[l]});
  // Most contiguous label innermost; the stable sort keeps label order otherwise.
  std::stable_sort(loops.begin(), loops.end(), [](const Loop& a, const Loop& b) {
    return scatteredReads(a) > scatteredReads(b);
  });
  if (loops.empty()) loops.push_back({1, std::vector<int64_t>(inputs, 0)});
  return loops;
}

StatusOr<Plan> planEinsum(const Equation& e, std::span<const Tensor* const> in) {
  NNC_ASSIGN_OR_RETURN(const std::vector<int> ell, ellipsisDims(e, in));
  const int total_ell = in.empty() ? 0 : *std::max_element(ell.begin(), ell.end());
  const size_t labels = kLetters + total_ell;
  std::vector<int64_t> size(labels, -1);
  std::vector<std::vector<int64_t>> strides(labels, std::vector<int64_t>(in.size(), 0));
  for (size_t i = 0; i < in.size(); ++i) {
    const std::vector<int> dims = expandTerm(e.inputs[i], ell[i], total_ell);
    NNC_RETURN_IF_ERROR(mergeSizes(*in[i], dims, i, size));
    addStrides(*in[i], dims, i, strides);
  }
  Plan p;
  std::vector<bool> in_output(labels, false);
  for (int l : expandTerm(e.output, total_ell, total_ell)) {
    in_output[l] = true;
    p.out_shape.push_back(size[l]);
    p.out_loops.push_back({size[l], strides[l]});
  }
  p.sum_loops = sumLoops(size, in_output, strides, in.size());
  return p;
}

// ---- execution ----

// A row-major walk over `loops` that keeps each input's element offset.
class Odometer {
 public:
  Odometer(std::span<const Loop> loops, size_t inputs)
      : loops_(loops), idx_(loops.size(), 0), off_(inputs, 0) {}

  // Positions at row-major index `linear` (all loop sizes must be > 0).
  void seek(int64_t linear) {
    std::fill(off_.begin(), off_.end(), 0);
    for (size_t d = loops_.size(); d-- > 0;) {
      const Loop& l = loops_[d];
      idx_[d] = linear % l.size;
      linear /= l.size;
      for (size_t k = 0; k < off_.size(); ++k) off_[k] += idx_[d] * l.strides[k];
    }
  }
  void reset() {
    std::fill(idx_.begin(), idx_.end(), 0);
    std::fill(off_.begin(), off_.end(), 0);
  }
  void next() {
    for (size_t d = loops_.size(); d-- > 0;) {
      const Loop& l = loops_[d];
      for (size_t k = 0; k < off_.size(); ++k) off_[k] += l.strides[k];
      if (++idx_[d] < l.size) return;
      for (size_t k = 0; k < off_.size(); ++k) off_[k] -= l.size * l.strides[k];
      idx_[d] = 0;
    }
  }
  const std::vector<int64_t>& offsets() const { return off_; }

 private:
  std::span<const Loop> loops_;
  std::vector<int64_t> idx_;
  std::vector<int64_t> off_;
};

int64_t loopCount(std::span<const Loop> loops) {
  int64_t n = 1;
  for (const Loop& l : loops) n *= l.size;
  return n;
}

// Integers accumulate in uint64: the same bits as int64 arithmetic, with defined wrap-around.
template <typename T>
using AccOf = std::conditional_t<std::is_floating_point_v<T>, double, uint64_t>;

// sum_k prod_i src[i][off[i] + k * stride[i]] for k in [0, n).
template <typename T, typename Acc>
Acc dotAlong(const std::vector<const T*>& src, const int64_t* off, const int64_t* stride,
             int64_t n) {
  const size_t inputs = src.size();
  if (inputs == 1) {
    const T* a = src[0] + off[0];
    Acc acc = 0;
    for (int64_t k = 0; k < n; ++k) acc += static_cast<Acc>(a[k * stride[0]]);
    return acc;
  }
  if (inputs == 2) {
    const T* a = src[0] + off[0];
    const T* b = src[1] + off[1];
    const int64_t sa = stride[0], sb = stride[1];
    if (sa == 1 && sb == 1) {  // the attention-score case: four sums hide the add latency
      Acc acc[4] = {0, 0, 0, 0};
      int64_t k = 0;
      for (; k + 4 <= n; k += 4)
        for (int j = 0; j < 4; ++j)
          acc[j] += static_cast<Acc>(a[k + j]) * static_cast<Acc>(b[k + j]);
      for (; k < n; ++k) acc[0] += static_cast<Acc>(a[k]) * static_cast<Acc>(b[k]);
      return (acc[0] + acc[1]) + (acc[2] + acc[3]);
    }
    Acc acc = 0;
    for (int64_t k = 0; k < n; ++k)
      acc += static_cast<Acc>(a[k * sa]) * static_cast<Acc>(b[k * sb]);
    return acc;
  }
  Acc acc = 0;
  for (int64_t k = 0; k < n; ++k) {
    Acc prod = 1;
    for (size_t i = 0; i < inputs; ++i) prod *= static_cast<Acc>(src[i][off[i] + k * stride[i]]);
    acc += prod;
  }
  return acc;
}

// acc[j] += prod_i src[i][off[i] + j * stride[i]] for j in [0, n).
template <typename T, typename Acc>
void accumulateRow(const std::vector<const T*>& src, const int64_t* off, const int64_t* stride,
                   int64_t n, Acc* acc) {
  const size_t inputs = src.size();
  if (inputs == 1) {
    const T* a = src[0] + off[0];
    for (int64_t j = 0; j < n; ++j) acc[j] += static_cast<Acc>(a[j * stride[0]]);
    return;
  }
  if (inputs == 2) {
    const T* a = src[0] + off[0];
    const T* b = src[1] + off[1];
    const int64_t sa = stride[0], sb = stride[1];
    if (sa == 0 || sb == 0) {  // one factor fixed along the row: a scaled add, vectorisable
      const Acc x = static_cast<Acc>(sa == 0 ? *a : *b);
      const T* v = sa == 0 ? b : a;
      const int64_t sv = sa == 0 ? sb : sa;
      if (sv == 1) {
        for (int64_t j = 0; j < n; ++j) acc[j] += x * static_cast<Acc>(v[j]);
      } else {
        for (int64_t j = 0; j < n; ++j) acc[j] += x * static_cast<Acc>(v[j * sv]);
      }
      return;
    }
    for (int64_t j = 0; j < n; ++j)
      acc[j] += static_cast<Acc>(a[j * sa]) * static_cast<Acc>(b[j * sb]);
    return;
  }
  for (int64_t j = 0; j < n; ++j) {
    Acc prod = 1;
    for (size_t i = 0; i < inputs; ++i) prod *= static_cast<Acc>(src[i][off[i] + j * stride[i]]);
    acc[j] += prod;
  }
}

// Splits `items` into chunks for the run's threads; fn(begin, end) per chunk.
template <typename Fn>
void forChunks(int64_t items, int64_t work_per_item, const RunContext& ctx, Fn&& fn) {
  if (items <= 0) return;
  const int64_t chunks = std::min<int64_t>(items, std::max(1, ctx.num_threads) * 8);
  const int64_t per = (items + chunks - 1) / chunks;
  parallelFor(chunks, ctx, per * work_per_item, [&](int64_t c) {
    const int64_t begin = c * per, end = std::min(items, begin + per);
    if (begin < end) fn(begin, end);
  });
}

// One output element at a time, a dot product along the innermost summed label: for
// contractions over a dim contiguous in the inputs.
template <typename T>
void einsumByElement(const Plan& p, const std::vector<const T*>& src, T* dst,
                     const RunContext& ctx) {
  using Acc = AccOf<T>;
  const size_t inputs = src.size();
  const Loop& inner = p.sum_loops.back();
  const std::span<const Loop> outer_sum(p.sum_loops.data(), p.sum_loops.size() - 1);
  const int64_t outer_count = loopCount(outer_sum);
  const int64_t work = loopCount(p.sum_loops) * static_cast<int64_t>(inputs) + 1;
  forChunks(loopCount(p.out_loops), work, ctx, [&](int64_t begin, int64_t end) {
    Odometer out(p.out_loops, inputs), sum(outer_sum, inputs);
    std::vector<int64_t> off(inputs);
    out.seek(begin);
    for (int64_t e = begin; e < end; ++e, out.next()) {
      Acc acc = 0;
      sum.reset();
      for (int64_t s = 0; s < outer_count; ++s, sum.next()) {
        for (size_t i = 0; i < inputs; ++i) off[i] = out.offsets()[i] + sum.offsets()[i];
        acc += dotAlong<T, Acc>(src, off.data(), inner.strides.data(), inner.size);
      }
      dst[e] = static_cast<T>(acc);
    }
  });
}

// One output row (the last output dim) at a time, adding each summed term along the row: for
// outputs whose last dim is contiguous (or broadcast) in every input.
template <typename T>
void einsumByRow(const Plan& p, const std::vector<const T*>& src, T* dst, const RunContext& ctx) {
  using Acc = AccOf<T>;
  const size_t inputs = src.size();
  const Loop& row = p.out_loops.back();
  const std::span<const Loop> outer_out(p.out_loops.data(), p.out_loops.size() - 1);
  const int64_t sum_count = loopCount(p.sum_loops);
  const int64_t work = sum_count * row.size * static_cast<int64_t>(inputs) + 1;
  forChunks(loopCount(outer_out), work, ctx, [&](int64_t begin, int64_t end) {
    Odometer out(outer_out, inputs), sum(p.sum_loops, inputs);
    std::vector<int64_t> off(inputs);
    std::vector<Acc> acc(row.size);
    out.seek(begin);
    for (int64_t r = begin; r < end; ++r, out.next()) {
      std::fill(acc.begin(), acc.end(), Acc(0));
      sum.reset();
      for (int64_t s = 0; s < sum_count; ++s, sum.next()) {
        for (size_t i = 0; i < inputs; ++i) off[i] = out.offsets()[i] + sum.offsets()[i];
        accumulateRow<T, Acc>(src, off.data(), row.strides.data(), row.size, acc.data());
      }
      T* o = dst + r * row.size;
      for (int64_t j = 0; j < row.size; ++j) o[j] = static_cast<T>(acc[j]);
    }
  });
}

// Row-wise when the last output dim reads contiguously and the innermost summed one does not.
bool preferRows(const Plan& p) {
  if (p.out_loops.empty() || p.out_loops.back().size < 4) return false;
  return scatteredReads(p.out_loops.back()) == 0 && scatteredReads(p.sum_loops.back()) > 0;
}

template <typename T>
Tensor einsumTyped(const Plan& p, std::span<const Tensor* const> in, const RunContext& ctx) {
  Tensor out = ctx.newTensor(in[0]->dtype(), p.out_shape);
  if (out.numel() == 0) return out;
  std::vector<const T*> src;
  for (const Tensor* t : in) src.push_back(t->data<T>().data());
  T* dst = out.mutableData<T>().data();
  if (preferRows(p)) {
    einsumByRow<T>(p, src, dst, ctx);
  } else {
    einsumByElement<T>(p, src, dst, ctx);
  }
  return out;
}

Status checkInputs(const Equation& e, std::span<const Tensor* const> in) {
  if (in.size() != e.inputs.size())
    return invalidModel("Einsum: equation '" + e.text + "' has " + std::to_string(e.inputs.size()) +
                        " terms but the node has " + std::to_string(in.size()) + " inputs");
  for (size_t i = 0; i < in.size(); ++i) {
    if (!in[i]) return invalidModel("Einsum: input " + std::to_string(i) + " is missing");
    if (in[i]->dtype() != in[0]->dtype()) return invalidModel("Einsum: inputs differ in type");
  }
  return Status::ok();
}

Status einsum(const Equation& e, std::span<const Tensor* const> in, Tensor& out,
              const RunContext& ctx) {
  NNC_RETURN_IF_ERROR(checkInputs(e, in));
  NNC_ASSIGN_OR_RETURN(const Plan plan, planEinsum(e, in));
  switch (in[0]->dtype()) {
    case DType::kFloat32:
      out = einsumTyped<float>(plan, in, ctx);
      return Status::ok();
    case DType::kFloat64:
      out = einsumTyped<double>(plan, in, ctx);
      return Status::ok();
    case DType::kInt32:
      out = einsumTyped<int32_t>(plan, in, ctx);
      return Status::ok();
    case DType::kInt64:
      out = einsumTyped<int64_t>(plan, in, ctx);
      return Status::ok();
    default:
      return unsupported(std::string("Einsum on ") + dtypeName(in[0]->dtype()) + " tensors");
  }
}

}  // namespace

void registerEinsumKernels(KernelRegistry& r) {
  r.addFunction("Einsum", [](const KernelBuildContext& b) -> StatusOr<KernelFn> {
    if (!b.node.hasAttribute("equation"))
      return invalidModel("Einsum: missing the 'equation' attribute");
    NNC_ASSIGN_OR_RETURN(Equation eq, parseEquation(b.node.stringAttr("equation", "")));
    if (eq.inputs.size() != b.node.numInputs())
      return invalidModel("Einsum: equation '" + eq.text + "' has " +
                          std::to_string(eq.inputs.size()) + " terms but the node has " +
                          std::to_string(b.node.numInputs()) + " inputs");
    return KernelFn(
        [eq = std::move(eq)](std::span<const Tensor* const> in, std::span<Tensor> out,
                             const RunContext& ctx) { return einsum(eq, in, out[0], ctx); });
  });
}

}  // namespace nnc::exec
