// RNN, GRU and LSTM (versions 7 and 14): one recurrent layer over a whole sequence, forward,
// reverse or both. Per direction, X*W^T plus the biases for every step is one GEMM; each step then
// adds H[t-1]*R^T and applies the cell (f, g, h the activations, . elementwise):
//
//   RNN   Ht = f(Xt*Wi^T + Ht-1*Ri^T + Wbi + Rbi)
//   GRU   zt = f(Xt*Wz^T + Ht-1*Rz^T + Wbz + Rbz), rt the same with r
//         ht = g(Xt*Wh^T + (rt . Ht-1)*Rh^T + Rbh + Wbh)    linear_before_reset 0
//         ht = g(Xt*Wh^T + rt . (Ht-1*Rh^T + Rbh) + Wbh)    linear_before_reset 1
//         Ht = (1 - zt) . ht + zt . Ht-1
//   LSTM  it = f(.. + Pi . Ct-1), ft = f(.. + Pf . Ct-1) (1 - it with input_forget), ct = g(..)
//         Ct = ft . Ct-1 + it . ct, ot = f(.. + Po . Ct), Ht = ot . h(Ct)
//
// Gate blocks in W, R and B: RNN i; GRU z r h; LSTM i o f c. clip bounds the input of every
// activation but h's (Ct), as ONNX Runtime does. layout 1 (version 14) puts batch before time in
// X, Y and the states. With sequence_lens, entry b runs its first len[b] steps (reverse: len[b]-1
// down to 0, as ORT does); Y is zero past them, Y_h and Y_c hold the state after the last step
// (zero for length 0, as in ORT).

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kernel_util.h"
#include "kernels.h"

namespace nnc::exec {
namespace {

using Inputs = std::span<const Tensor* const>;
using Outputs = std::span<Tensor>;

enum class Cell { kRnn, kGru, kLstm };

struct CellInfo {
  const char* op;
  int64_t gates;
  size_t activations;  // per direction
  std::array<const char*, 3> defaults;
};

const CellInfo& cellInfo(Cell cell) {
  static const CellInfo kInfo[] = {{"RNN", 1, 1, {"Tanh"}},
                                   {"GRU", 3, 2, {"Sigmoid", "Tanh"}},
                                   {"LSTM", 4, 3, {"Sigmoid", "Tanh", "Tanh"}}};
  return kInfo[static_cast<int>(cell)];
}

// ---- Activations ----

using ActFn = float (*)(float x, float alpha, float beta);

struct Activation {
  ActFn fn = nullptr;
  float alpha = 0.f, beta = 0.f;
  float operator()(float x) const { return fn(x, alpha, beta); }
};

constexpr float kNoDefault = std::numeric_limits<float>::quiet_NaN();

// The spec's list. Defaults are the ONNX operators' where one exists; Affine and ScaledTanh have
// none, and ThresholdedRelu's (1 for the operator) is 0 in ONNX Runtime, so those need theirs set.
struct ActivationKind {
  const char* name;  // lower case: names match case-insensitively, as in ORT
  ActFn fn;
  int params;  // reads alpha (1) or alpha and beta (2)
  float alpha = kNoDefault, beta = kNoDefault;
};

const ActivationKind kActivations[] = {
    {"relu", [](float x, float, float) { return std::max(x, 0.f); }, 0},
    {"tanh", [](float x, float, float) { return std::tanh(x); }, 0},
    {"sigmoid", [](float x, float, float) { return 1.f / (1.f + std::exp(-x)); }, 0},
    {"affine", [](float x, float a, float b) { return a * x + b; }, 2},
    {"leakyrelu", [](float x, float a, float) { return x >= 0 ? x : a * x; }, 1, 0.01f},
    {"thresholdedrelu", [](float x, float a, float) { return x >= a ? x : 0.f; }, 1},
    {"scaledtanh", [](float x, float a, float b) { return a * std::tanh(b * x); }, 2},
    {"hardsigmoid",
     [](float x, float a, float b) { return std::min(std::max(a * x + b, 0.f), 1.f); }, 2, 0.2f,
     0.5f},
    {"elu", [](float x, float a, float) { return x >= 0 ? x : a * std::expm1(x); }, 1, 1.f},
    {"softsign", [](float x, float, float) { return x / (1.f + std::abs(x)); }, 0},
    {"softplus",  // log(1 + e^x) without overflow for large x
     [](float x, float, float) { return std::max(x, 0.f) + std::log1p(std::exp(-std::abs(x))); },
     0},
};

std::vector<float> floatsAttr(const Node& n, const char* name) {
  const Attribute* a = n.findAttribute(name);
  return a ? a->floats : std::vector<float>{};
}

// Takes the next value of `list` (alphas or betas), else the kind's default.
StatusOr<float> nextParam(const std::vector<float>& list, size_t& next, float fallback,
                          const std::string& what) {
  if (next < list.size()) return list[next++];
  if (std::isnan(fallback)) return unsupported(what + " without a value: defaults differ");
  return fallback;
}

// alpha and beta are consumed in order by the activations that read them, as ORT does.
StatusOr<std::vector<Activation>> readActivations(const Node& n, const CellInfo& cell,
                                                  size_t directions) {
  const Attribute* attr = n.findAttribute("activations");
  std::vector<std::string> names = attr ? attr->strings : std::vector<std::string>{};
  const std::vector<float> alphas = floatsAttr(n, "activation_alpha");
  const std::vector<float> betas = floatsAttr(n, "activation_beta");
  if (!attr) names.assign(cell.defaults.begin(), cell.defaults.begin() + cell.activations);
  if (names.size() == cell.activations && directions == 2) {
    // One set for both directions: unambiguous only without alpha and beta lists.
    if (attr && (!alphas.empty() || !betas.empty()))
      return unsupported(std::string(cell.op) + ": bidirectional with one set of activations " +
                         "and activation_alpha/beta");
    const std::vector<std::string> one_direction = names;
    names.insert(names.end(), one_direction.begin(), one_direction.end());
  }
  if (names.size() != cell.activations * directions)
    return invalidModel(std::string(cell.op) + ": expected " +
                        std::to_string(cell.activations * directions) + " activations, got " +
                        std::to_string(names.size()));
  std::vector<Activation> acts;
  size_t next_alpha = 0, next_beta = 0;
  for (const std::string& name : names) {
    std::string lower = name;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto kind = std::find_if(std::begin(kActivations), std::end(kActivations),
                             [&](const ActivationKind& k) { return lower == k.name; });
    if (kind == std::end(kActivations))
      return unsupported(std::string(cell.op) + " activation '" + name + "'");
    Activation act{kind->fn};
    if (kind->params >= 1) {
      NNC_ASSIGN_OR_RETURN(act.alpha, nextParam(alphas, next_alpha, kind->alpha, name + " alpha"));
    }
    if (kind->params >= 2) {
      NNC_ASSIGN_OR_RETURN(act.beta, nextParam(betas, next_beta, kind->beta, name + " beta"));
    }
    acts.push_back(act);
  }
  return acts;
}

// ---- Attributes ----

struct RecurrentSpec {
  Cell cell = Cell::kRnn;
  int64_t hidden_size = 0;  // 0: taken from R
  int64_t directions = 1;
  bool reverse = false;      // with one direction
  bool batch_first = false;  // layout 1
  float clip = std::numeric_limits<float>::infinity();
  bool linear_before_reset = false;  // GRU
  bool input_forget = false;         // LSTM
  std::vector<Activation> acts;      // cellInfo(cell).activations per direction
  std::array<bool, 3> wanted = {};   // Y, Y_h, Y_c named
};

StatusOr<RecurrentSpec> readSpec(const KernelBuildContext& b, Cell cell) {
  const CellInfo& info = cellInfo(cell);
  const Node& n = b.node;
  RecurrentSpec s;
  s.cell = cell;
  s.hidden_size = n.intAttr("hidden_size", 0);
  const std::string direction = n.stringAttr("direction", "forward");
  if (direction != "forward" && direction != "reverse" && direction != "bidirectional")
    return invalidModel(std::string(info.op) + ": unknown direction '" + direction + "'");
  s.directions = direction == "bidirectional" ? 2 : 1;
  s.reverse = direction == "reverse";
  const int64_t layout = n.intAttr("layout", 0);
  if (layout != 0 && layout != 1) return invalidModel("layout must be 0 or 1");
  if (layout == 1 && b.opset > 0 && b.opset < 14)
    return invalidModel(std::string(info.op) + ": layout exists from opset 14");
  s.batch_first = layout == 1;
  if (n.hasAttribute("clip")) s.clip = n.floatAttr("clip", 0.f);
  if (!(s.clip > 0)) return invalidModel(std::string(info.op) + ": clip must be positive");
  s.linear_before_reset = cell == Cell::kGru && n.intAttr("linear_before_reset", 0) != 0;
  s.input_forget = cell == Cell::kLstm && n.intAttr("input_forget", 0) != 0;
  NNC_ASSIGN_OR_RETURN(s.acts, readActivations(n, info, static_cast<size_t>(s.directions)));
  for (size_t i = 0; i < s.wanted.size(); ++i) s.wanted[i] = n.output(i) != nullptr;
  return s;
}

// ---- Shapes and indexing ----

struct Dims {
  int64_t steps = 0, batch = 0, input = 0, hidden = 0, directions = 1, gates = 1;
  bool batch_first = false;
  int64_t xRow(int64_t t, int64_t b) const { return batch_first ? b * steps + t : t * batch + b; }
  int64_t yOffset(int64_t t, int64_t d, int64_t b) const {
    return (batch_first ? (b * steps + t) * directions + d : (t * directions + d) * batch + b) *
           hidden;
  }
  int64_t stateOffset(int64_t d, int64_t b) const {
    return (batch_first ? b * directions + d : d * batch + b) * hidden;
  }
  Shape stateShape() const {
    return batch_first ? Shape{batch, directions, hidden} : Shape{directions, batch, hidden};
  }
  Shape yShape() const {
    return batch_first ? Shape{batch, steps, directions, hidden}
                       : Shape{steps, directions, batch, hidden};
  }
};

Status expectShape(const Tensor* t, const Shape& want, const char* op, const char* what) {
  if (!t) return Status::ok();
  NNC_RETURN_IF_ERROR(requireDType(*t, DType::kFloat32, what));
  if (t->shape() != want)
    return shapeMismatch(std::string(op) + " " + what + " must have shape " + shapeToString(want) +
                         ", got " + shapeToString(t->shape()));
  return Status::ok();
}

const Tensor* optionalInput(Inputs in, size_t i) { return i < in.size() ? in[i] : nullptr; }

StatusOr<Dims> checkInputs(const RecurrentSpec& s, Inputs in) {
  const CellInfo& info = cellInfo(s.cell);
  NNC_RETURN_IF_ERROR(requireInput(in, 0, "X"));
  NNC_RETURN_IF_ERROR(requireInput(in, 1, "W"));
  NNC_RETURN_IF_ERROR(requireInput(in, 2, "R"));
  const Tensor &x = *in[0], &r = *in[2];
  NNC_RETURN_IF_ERROR(requireDType(x, DType::kFloat32, "X"));
  if (x.rank() != 3 || r.rank() != 3)
    return shapeMismatch(std::string(info.op) + ": X and R must be 3-D, got " +
                         shapeToString(x.shape()) + " and " + shapeToString(r.shape()));
  Dims dm;
  dm.batch_first = s.batch_first;
  dm.steps = x.dim(s.batch_first ? 1 : 0);
  dm.batch = x.dim(s.batch_first ? 0 : 1);
  dm.input = x.dim(2);
  dm.hidden = s.hidden_size > 0 ? s.hidden_size : r.dim(2);
  dm.directions = s.directions;
  dm.gates = info.gates;
  const int64_t gh = dm.gates * dm.hidden, d = dm.directions;
  NNC_RETURN_IF_ERROR(expectShape(in[1], {d, gh, dm.input}, info.op, "W"));
  NNC_RETURN_IF_ERROR(expectShape(in[2], {d, gh, dm.hidden}, info.op, "R"));
  NNC_RETURN_IF_ERROR(expectShape(optionalInput(in, 3), {d, 2 * gh}, info.op, "B"));
  NNC_RETURN_IF_ERROR(expectShape(optionalInput(in, 5), dm.stateShape(), info.op, "initial_h"));
  if (s.cell == Cell::kLstm) {
    NNC_RETURN_IF_ERROR(expectShape(optionalInput(in, 6), dm.stateShape(), info.op, "initial_c"));
    NNC_RETURN_IF_ERROR(expectShape(optionalInput(in, 7), {d, 3 * dm.hidden}, info.op, "P"));
  }
  return dm;
}

StatusOr<std::vector<int64_t>> sequenceLengths(const Tensor* t, const Dims& dm, const char* op) {
  if (!t) return std::vector<int64_t>(dm.batch, dm.steps);
  if (t->dtype() != DType::kInt32 || t->rank() != 1 || t->dim(0) != dm.batch)
    return invalidModel(std::string(op) + ": sequence_lens must be int32 of shape [" +
                        std::to_string(dm.batch) + "], got " + dtypeName(t->dtype()) + " " +
                        shapeToString(t->shape()));
  std::vector<int64_t> lens(t->data<int32_t>().begin(), t->data<int32_t>().end());
  for (int64_t len : lens)
    if (len < 0 || len > dm.steps)
      return invalidModel(std::string(op) + ": sequence length " + std::to_string(len) +
                          " outside [0, " + std::to_string(dm.steps) + "]");
  return lens;
}

// ---- One direction ----

// The tensors of one direction, its lengths and where its results go.
struct Direction {
  int64_t d = 0;
  bool reverse = false;
  const float* x = nullptr;
  const float* w = nullptr;     // [gates * hidden, input]
  const float* r = nullptr;     // [gates * hidden, hidden]
  const float* bias = nullptr;  // [2 * gates * hidden] (Wb then Rb) or null
  const float* p = nullptr;     // LSTM peepholes [3 * hidden] (i o f) or null
  const Activation* acts = nullptr;
  const std::vector<int64_t>* lens = nullptr;
  float* y = nullptr;  // null when Y is not wanted
};

// C[m, n] = A[m, k] * B[n, k]^T (+ a bias per column).
void gemmNT(int64_t m, int64_t n, int64_t k, const float* a, const float* b, float* c, int64_t ldc,
            const float* col_bias = nullptr) {
  GemmArgs g;
  g.m = m, g.n = n, g.k = k;
  g.a = a, g.lda = k;
  g.b = b, g.ldb = k, g.trans_b = true;
  g.c = c, g.ldc = ldc;
  Epilogue epi;
  epi.col_bias = col_bias;
  sgemm(g, epi);
}

// X*W^T + bias for every step and batch entry: [rows of X, gates * hidden]. The bias holds
// Wb + Rb, but GRU's Rbh with linear_before_reset, which goes inside the reset product.
std::vector<float> inputProjection(const RecurrentSpec& s, const Dims& dm, const Direction& dir,
                                   const RunContext& ctx) {
  const int64_t gh = dm.gates * dm.hidden, rows = dm.steps * dm.batch;
  std::vector<float> bias(gh, 0.f);
  if (dir.bias)
    for (int64_t i = 0; i < gh; ++i) {
      const bool keep_rb = !(s.linear_before_reset && i >= 2 * dm.hidden);
      bias[i] = dir.bias[i] + (keep_rb ? dir.bias[gh + i] : 0.f);
    }
  std::vector<float> xw(static_cast<size_t>(rows * gh));
  const int64_t chunk = 64;  // rows per task
  parallelFor((rows + chunk - 1) / chunk, ctx, chunk * gh * dm.input, [&](int64_t c) {
    const int64_t r0 = c * chunk, r1 = std::min(rows, r0 + chunk);
    gemmNT(r1 - r0, gh, dm.input, dir.x + r0 * dm.input, dir.w, xw.data() + r0 * gh, gh,
           bias.data());
  });
  return xw;
}

// Recurrent state of one direction, [batch, hidden] each.
struct State {
  std::vector<float> h, c;
};

State initialState(Inputs in, const Dims& dm, int64_t d, bool lstm) {
  State st;
  const size_t size = static_cast<size_t>(dm.batch * dm.hidden);
  st.h.assign(size, 0.f);
  if (lstm) st.c.assign(size, 0.f);
  auto load = [&](const Tensor* t, std::vector<float>& dst) {
    if (!t) return;
    for (int64_t b = 0; b < dm.batch; ++b)
      std::memcpy(dst.data() + b * dm.hidden, t->data<float>().data() + dm.stateOffset(d, b),
                  sizeof(float) * dm.hidden);
  };
  load(optionalInput(in, 5), st.h);
  if (lstm) load(optionalInput(in, 6), st.c);
  return st;
}

float clipped(float x, float clip) { return std::min(std::max(x, -clip), clip); }

// Steps of one direction: `step(k, active)` runs step k for the entries in `active`, each with
// its time index (counted from the end of its own length when reversed).
struct Active {
  int64_t b, t;
};

template <typename StepFn>
void forEachStep(const Dims& dm, const Direction& dir, StepFn&& step) {
  const auto& lens = *dir.lens;
  const int64_t max_len = lens.empty() ? 0 : *std::max_element(lens.begin(), lens.end());
  std::vector<Active> active;
  for (int64_t k = 0; k < max_len; ++k) {
    active.clear();
    for (int64_t b = 0; b < dm.batch; ++b)
      if (k < lens[b]) active.push_back({b, dir.reverse ? lens[b] - 1 - k : k});
    step(active);
  }
}

void writeY(const Dims& dm, const Direction& dir, const Active& a, const float* h) {
  if (dir.y) std::memcpy(dir.y + dm.yOffset(a.t, dir.d, a.b), h, sizeof(float) * dm.hidden);
}

void runRnn(const RecurrentSpec& s, const Dims& dm, const Direction& dir,
            const std::vector<float>& xw, State& st) {
  const int64_t hs = dm.hidden;
  std::vector<float> hr(static_cast<size_t>(dm.batch * hs));
  forEachStep(dm, dir, [&](const std::vector<Active>& active) {
    gemmNT(dm.batch, hs, hs, st.h.data(), dir.r, hr.data(), hs);
    for (const Active& a : active) {
      const float* in = xw.data() + dm.xRow(a.t, a.b) * hs;
      float* h = st.h.data() + a.b * hs;
      for (int64_t j = 0; j < hs; ++j)
        h[j] = dir.acts[0](clipped(in[j] + hr[a.b * hs + j], s.clip));
      writeY(dm, dir, a, h);
    }
  });
}

void runGru(const RecurrentSpec& s, const Dims& dm, const Direction& dir,
            const std::vector<float>& xw, State& st) {
  const int64_t hs = dm.hidden, gh = 3 * hs;
  const Activation &f = dir.acts[0], &g = dir.acts[1];
  const float* rh_weights = dir.r + 2 * hs * hs;
  const float* rbh = dir.bias ? dir.bias + gh + 2 * hs : nullptr;
  std::vector<float> hr(static_cast<size_t>(dm.batch * gh)), z(dm.batch * hs),
      rh(dm.batch * hs, 0.f), lin(dm.batch * hs);
  forEachStep(dm, dir, [&](const std::vector<Active>& active) {
    // Ht-1 * R^T for z and r (and h with linear_before_reset).
    gemmNT(dm.batch, s.linear_before_reset ? gh : 2 * hs, hs, st.h.data(), dir.r, hr.data(), gh);
    for (const Active& a : active) {
      const float* in = xw.data() + dm.xRow(a.t, a.b) * gh;
      const float* acc = hr.data() + a.b * gh;
      const float* h = st.h.data() + a.b * hs;
      for (int64_t j = 0; j < hs; ++j) {
        z[a.b * hs + j] = f(clipped(in[j] + acc[j], s.clip));
        const float r = f(clipped(in[hs + j] + acc[hs + j], s.clip));
        // linear_before_reset: rt . (Ht-1*Rh^T + Rbh); else rt . Ht-1, multiplied by Rh below.
        rh[a.b * hs + j] =
            s.linear_before_reset ? r * (acc[2 * hs + j] + (rbh ? rbh[j] : 0.f)) : r * h[j];
      }
    }
    if (!s.linear_before_reset) gemmNT(dm.batch, hs, hs, rh.data(), rh_weights, lin.data(), hs);
    const std::vector<float>& reset = s.linear_before_reset ? rh : lin;
    for (const Active& a : active) {
      const float* in = xw.data() + dm.xRow(a.t, a.b) * gh + 2 * hs;
      float* h = st.h.data() + a.b * hs;
      for (int64_t j = 0; j < hs; ++j) {
        const float ht = g(clipped(in[j] + reset[a.b * hs + j], s.clip)), zt = z[a.b * hs + j];
        h[j] = (1.f - zt) * ht + zt * h[j];
      }
      writeY(dm, dir, a, h);
    }
  });
}

void runLstm(const RecurrentSpec& s, const Dims& dm, const Direction& dir,
             const std::vector<float>& xw, State& st) {
  const int64_t hs = dm.hidden, gh = 4 * hs;
  const Activation &f = dir.acts[0], &g = dir.acts[1], &h_act = dir.acts[2];
  std::vector<float> hr(static_cast<size_t>(dm.batch * gh));
  const std::vector<float> no_peepholes(3 * hs, 0.f);
  const float* pi = dir.p ? dir.p : no_peepholes.data();
  const float *po = pi + hs, *pf = pi + 2 * hs;
  forEachStep(dm, dir, [&](const std::vector<Active>& active) {
    gemmNT(dm.batch, gh, hs, st.h.data(), dir.r, hr.data(), gh);
    for (const Active& a : active) {
      const float* in = xw.data() + dm.xRow(a.t, a.b) * gh;
      const float* acc = hr.data() + a.b * gh;
      float* h = st.h.data() + a.b * hs;
      float* c = st.c.data() + a.b * hs;
      auto pre = [&](int gate, int64_t j) { return in[gate * hs + j] + acc[gate * hs + j]; };
      for (int64_t j = 0; j < hs; ++j) {  // gate blocks: 0 i, 1 o, 2 f, 3 c
        const float it = f(clipped(pre(0, j) + pi[j] * c[j], s.clip));
        const float ft = s.input_forget ? 1.f - it : f(clipped(pre(2, j) + pf[j] * c[j], s.clip));
        const float ct = g(clipped(pre(3, j), s.clip));
        c[j] = ft * c[j] + it * ct;
        const float ot = f(clipped(pre(1, j) + po[j] * c[j], s.clip));
        h[j] = ot * h_act(c[j]);
      }
      writeY(dm, dir, a, h);
    }
  });
}

// Y_h (and Y_c): the final state, zero for an entry of length 0.
void writeFinal(const Dims& dm, const Direction& dir, const std::vector<float>& state,
                Tensor& out) {
  float* dst = out.mutableData<float>().data();
  for (int64_t b = 0; b < dm.batch; ++b) {
    float* row = dst + dm.stateOffset(dir.d, b);
    if ((*dir.lens)[b] == 0) {
      std::fill(row, row + dm.hidden, 0.f);
    } else {
      std::memcpy(row, state.data() + b * dm.hidden, sizeof(float) * dm.hidden);
    }
  }
}

Status runRecurrent(const RecurrentSpec& s, Inputs in, Outputs out, const RunContext& ctx) {
  const CellInfo& info = cellInfo(s.cell);
  NNC_ASSIGN_OR_RETURN(const Dims dm, checkInputs(s, in));
  NNC_ASSIGN_OR_RETURN(const std::vector<int64_t> lens,
                       sequenceLengths(optionalInput(in, 4), dm, info.op));
  const bool lstm = s.cell == Cell::kLstm;
  const size_t outputs = std::min<size_t>(out.size(), lstm ? 3 : 2);
  Tensor y = s.wanted[0] ? Tensor(DType::kFloat32, dm.yShape()) : Tensor();  // zero past lengths
  Tensor y_h(DType::kFloat32, dm.stateShape()), y_c(DType::kFloat32, dm.stateShape());
  const int64_t gh = dm.gates * dm.hidden;
  const Tensor* b = optionalInput(in, 3);
  const Tensor* p = lstm ? optionalInput(in, 7) : nullptr;
  for (int64_t d = 0; d < dm.directions; ++d) {
    Direction dir;
    dir.d = d;
    dir.reverse = s.reverse || d == 1;
    dir.x = in[0]->data<float>().data();
    dir.w = in[1]->data<float>().data() + d * gh * dm.input;
    dir.r = in[2]->data<float>().data() + d * gh * dm.hidden;
    dir.bias = b ? b->data<float>().data() + d * 2 * gh : nullptr;
    dir.p = p ? p->data<float>().data() + d * 3 * dm.hidden : nullptr;
    dir.acts = s.acts.data() + d * info.activations;
    dir.lens = &lens;
    dir.y = s.wanted[0] ? y.mutableData<float>().data() : nullptr;
    const std::vector<float> xw = inputProjection(s, dm, dir, ctx);
    State st = initialState(in, dm, d, lstm);
    if (s.cell == Cell::kRnn) runRnn(s, dm, dir, xw, st);
    if (s.cell == Cell::kGru) runGru(s, dm, dir, xw, st);
    if (lstm) runLstm(s, dm, dir, xw, st);
    writeFinal(dm, dir, st.h, y_h);
    if (lstm) writeFinal(dm, dir, st.c, y_c);
  }
  Tensor results[] = {std::move(y), std::move(y_h), std::move(y_c)};
  for (size_t i = 0; i < outputs; ++i)
    if (s.wanted[i]) out[i] = std::move(results[i]);
  return Status::ok();
}

void addRecurrent(KernelRegistry& r, Cell cell) {
  r.addFunction(cellInfo(cell).op, [cell](const KernelBuildContext& b) -> StatusOr<KernelFn> {
    // Version 1 had output_sequence; 22 adds bfloat16 and is not claimed here.
    const std::string op = cellInfo(cell).op;
    if (b.opset > 0 && b.opset < 7) return unsupported(op + "-1 (opset < 7) is not implemented");
    NNC_RETURN_IF_ERROR(requireOpVersion(op.c_str(), b.opset, 1, 22));
    NNC_ASSIGN_OR_RETURN(RecurrentSpec s, readSpec(b, cell));
    return KernelFn([s = std::move(s)](Inputs in, Outputs out, const RunContext& ctx) {
      return runRecurrent(s, in, out, ctx);
    });
  });
}

}  // namespace

void registerRecurrentKernels(KernelRegistry& r) {
  addRecurrent(r, Cell::kRnn);
  addRecurrent(r, Cell::kGru);
  addRecurrent(r, Cell::kLstm);
}

}  // namespace nnc::exec
