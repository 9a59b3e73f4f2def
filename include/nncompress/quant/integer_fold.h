#pragma once
// Integer-only folding (METHODS.md method 5) of a QDQ-quantized model.
//
// Before (QDQ, BatchNorm already folded into the Conv):
//   x_q -> DequantizeLinear(s_x, z_x) --+
//   W_q -> DequantizeLinear(s_w[c]) -----+-> Conv(+b) -> [Relu | Clip]* -> QuantizeLinear(s_a, z_a)
// After:
//   x_q, W_q -> ConvInteger(z_x) -> A (int32, exact accumulator)
//     act_bits <= 4: q = #{ j : A >= T[c][j] }   (Unsqueeze, GreaterOrEqual, Cast, ReduceSum, Cast)
//     act_bits == 8: q = min(hi, max(lo, (m_c A + o_c + K_c 2^S_c) / 2^S_c - K_c))   (int64 Mul,
//                    Add, Div, Sub, Max, Min, Cast; K_c makes the dividend >= 0, so Div floors)
// With y(A) = s_x s_w[c] A + b[c] evaluated in double, passed through the chain's clamps
// (Relu, Clip, the k-bit Clip) and q = clip(rne(y / s_a) + z_a, 0, 255), q is a non-decreasing
// function of A (s_x, s_w > 0; a BatchNorm's negative gamma lives in the sign of W_q), so it is
// exactly the number of thresholds T_j = min{A : q(A) >= j} that A reaches. The fixed-point form
// picks m_c = round(M_c 2^S_c) and an offset o_c inside the intersection of the intervals that
// put every step of floor((m A + o) / 2^S) at the same T_j, raising S until that is possible over
// the whole reachable accumulator range (|x_q - z_x| <= 255, the layer's weights). Both forms are
// then bit-identical to the fake-quant chain's integers over every reachable accumulator.
// Layers not matching (input not quantized uint8, output read by float ops, non-constant params)
// stay QDQ.

#include <string>
#include <vector>

#include "nncompress/ir/graph.h"
#include "nncompress/quant/quantize.h"

namespace nnc::quant {

struct IntegerLayer {
  std::string name;      // the Conv's node name (or output name)
  std::string form;      // "thresholds" or "multiplier"
  std::string input;     // uint8 input value (a QuantizeLinear output)
  std::string output;    // uint8 output value of the integer chain
  std::string replaced;  // the QuantizeLinear output it replaces (a value of the QDQ model)
  int levels = 0;        // thresholds per channel (thresholds form)
  int max_shift = 0;     // largest S_c (multiplier form)
};

struct IntegerFoldResult {
  std::vector<IntegerLayer> folded;
  std::vector<std::pair<std::string, std::string>> skipped;  // layer name, reason
};

// Rewrites every Conv chain of the QDQ `model` that matches into integer ops. `act_bits` selects
// the form: <= 4 thresholds, 8 fixed-point multiplier. Needs opset >= 13.
StatusOr<IntegerFoldResult> foldIntegerLayers(Model& model, int act_bits);

// --format integer: the QDQ export (same scales, same act bits), then foldIntegerLayers. Folded
// layers are reported with op "ConvInteger" and their uint8 output as quantized_output.
StatusOr<std::vector<QuantizedLayer>> quantizeInteger(
    Model& model, const std::vector<QuantTarget>& targets,
    const std::map<std::string, Range>& activation_ranges, const QuantizeOptions& options);

}  // namespace nnc::quant
