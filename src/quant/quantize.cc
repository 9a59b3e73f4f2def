#include "nncompress/quant/quantize.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <set>

#include "nncompress/ir/option_error.h"
#include "nncompress/quant/integer_fold.h"
#include "quantize_internal.h"

namespace nnc::quant {
namespace {

// Ops that change meaning between opset 17 and 21 when only the version number is raised
// (onnx/docs/Changelog.md): Reduce* (not ReduceSum) take axes as an input from 18 and
// GridSample's modes bilinear / bicubic are spelled linear / cubic from 20 (both respelled
// exactly by respellForOpset21); DFT takes its axis as an input from 20 and
// GroupNormalization's scale and bias became per channel in 21 (refused). Everything else in
// 18-21 only adds types or attributes whose defaults keep the old meaning.
const std::set<std::string>& reduceOpsWithAxesAttribute() {
  static const std::set<std::string> ops = {"ReduceMean",   "ReduceMax",       "ReduceMin",
                                            "ReduceProd",   "ReduceL1",        "ReduceL2",
                                            "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"};
  return ops;
}

bool blocksOpsetUpgrade(const Node& n) {
  return n.isDefaultDomain() && (n.isOp("DFT") || n.isOp("GroupNormalization"));
}

// The opset-17 spellings that opset 21 reads differently, rewritten to mean the same there.
void respellForOpset21(Graph& g) {
  for (const auto& n : g.nodes()) {
    if (!n->isDefaultDomain()) continue;
    if (reduceOpsWithAxesAttribute().count(n->opType()) && n->hasAttribute("axes")) {
      const std::vector<int64_t> axes = n->intsAttr("axes");
      n->removeAttribute("axes");
      const std::string base = (n->name().empty() ? n->output(0)->name() : n->name()) + "_axes";
      n->addInput(
          g.addInitializer(base, Tensor::fromVector<int64_t>({int64_t(axes.size())}, axes)));
    }
    if (n->isOp("GridSample") && n->hasAttribute("mode")) {
      const std::string mode = n->stringAttr("mode", "bilinear");
      if (mode == "bilinear" || mode == "bicubic")
        n->setAttribute(Attribute::makeString("mode", mode == "bilinear" ? "linear" : "cubic"));
    }
  }
}

// The opset the version converter (libonnx 1.12) reaches; beyond it int4 is a version bump.
constexpr int64_t kConverterOpset = 17;

// Opset changes below 17 go through ONNX's version converter, which rebuilds the model (so the
// caller converts before choosing targets: `nncompress convert`, convertModelOpset); here the
// model must already be there. int4 needs 21, which the converter cannot reach: 17 -> 21 is a
// plain version bump, refused when a node would change meaning (blocksOpsetUpgrade), with IR 10
// (the first with int4).
Status requireOpset(Model& model, int64_t needed, const std::string& why) {
  const int64_t have = model.opsetVersion("");
  if (have >= needed) return Status::ok();
  const int64_t floor = needed > kConverterOpset ? kConverterOpset : needed;
  if (have < floor)
    return unsupported("the model's opset " + std::to_string(have) + " is below " +
                       std::to_string(floor) + "; " + why + " needs opset " +
                       std::to_string(needed) +
                       " (convert it first with ONNX's version converter)");
  for (const auto& n : model.graph->nodes())
    if (blocksOpsetUpgrade(*n))
      return unsupported(why + " needs opset " + std::to_string(needed) + " but node '" +
                         displayName(*n) + "' (" + n->opType() +
                         ") would change meaning when the opset is raised");
  if (needed >= 21) respellForOpset21(*model.graph);
  for (auto& o : model.opset_imports)
    if (o.domain.empty() || o.domain == "ai.onnx") o.version = needed;
  if (needed >= 21) model.ir_version = std::max<int64_t>(model.ir_version, 10);
  spdlog::debug("raised the model's opset from {} to {} ({})", have, needed, why);
  return Status::ok();
}

}  // namespace

StatusOr<QuantFormat> parseQuantFormat(const std::string& name) {
  if (name == "qdq") return QuantFormat::kQdq;
  if (name == "qoperator") return QuantFormat::kQOperator;
  if (name == "weights-only") return QuantFormat::kWeightsOnly;
  if (name == "integer") return QuantFormat::kInteger;
  return invalidOption("format", "unknown quantization format '" + name +
                                     "' (expected qdq, qoperator, weights-only or integer)");
}

const char* quantFormatName(QuantFormat format) {
  switch (format) {
    case QuantFormat::kQdq:
      return "qdq";
    case QuantFormat::kQOperator:
      return "qoperator";
    case QuantFormat::kWeightsOnly:
      return "weights-only";
    case QuantFormat::kInteger:
      return "integer";
  }
  return "?";
}

StatusOr<std::vector<QuantizedLayer>> quantizeModel(
    Model& model, const std::vector<QuantTarget>& targets,
    const std::map<std::string, Range>& activation_ranges, const QuantizeOptions& options) {
  if (options.weight_bits != 8 && options.weight_bits != 4)
    return invalidOption("weight_bits", "weight bits must be 8 or 4");
  if (options.act_bits != 8 && options.act_bits != 4 && options.act_bits != 2)
    return invalidOption("act_bits", "activation bits must be 8, 4 or 2");
  if (options.act_bits != 8 && options.format == QuantFormat::kQOperator)
    return unsupportedOption(
        "act_bits", std::to_string(options.act_bits) +
                        "-bit activations need the qdq or integer format (QLinearConv outputs are "
                        "8-bit)");
  if (options.format == QuantFormat::kInteger)
    return quantizeInteger(model, targets, activation_ranges, options);
  auto bitsOf = [&](const QuantTarget& t) {
    auto it = options.layer_weight_bits.find(t.name);
    return it == options.layer_weight_bits.end() ? options.weight_bits : it->second;
  };
  bool int4 = options.weight_bits == 4;
  for (const QuantTarget& t : targets) {
    const int bits = bitsOf(t);
    if (bits != 8 && bits != 4)
      return invalidArgument("layer '" + t.name + "': weight bits must be 8 or 4");
    int4 = int4 || bits == 4;
  }
  if (options.format == QuantFormat::kQOperator && int4)
    return unsupportedOption(
        "weight_bits",
        "the qoperator format needs 8-bit weights (QLinearConv takes 8-bit weights)");
  if (int4) {
    NNC_RETURN_IF_ERROR(requireOpset(model, 21, "int4 weights (blocked DequantizeLinear)"));
  } else if (options.per_channel) {
    NNC_RETURN_IF_ERROR(requireOpset(model, 13, "per-channel DequantizeLinear"));
  } else {
    NNC_RETURN_IF_ERROR(requireOpset(model, 10, "QuantizeLinear/DequantizeLinear"));
  }
  Graph& g = *model.graph;
  // ort placement: planned on the float graph, ranges of shared-scale tensors unified first.
  const OrtQdqPlan plan = planOrtQdq(g, targets, options);
  using RangeMap = std::map<std::string, Range>;
  NNC_ASSIGN_OR_RETURN(const RangeMap ranges, resolvePlannedRanges(plan, activation_ranges));
  const bool quantize_acts = options.format != QuantFormat::kWeightsOnly;
  std::map<std::string, ActQuant> made;  // activation -> its shared Q/DQ
  std::vector<QuantizedLayer> layers;
  for (const QuantTarget& t : targets) {
    Node& n = *t.node;
    const int bits = bitsOf(t);
    QuantizedLayer info{
        t.name, n.opType(), bits, 0, 0, 0, 0, n.output(0)->name(), n.output(0)->name()};
    if (options.format == QuantFormat::kQOperator && !t.activation_inputs.empty()) {
      NNC_ASSIGN_OR_RETURN(info, writeQOperatorLayer(g, t, ranges, options, made));
      layers.push_back(info);
      continue;
    }
    const std::string wbase = n.input(1)->name();
    Value* old_w = n.input(1);
    const WeightQuant wq =
        bits == 4 ? quantizeWeightInt4(g, n, options.block_size, options.balanced_rounding, wbase)
                  : quantizeWeightInt8(g, n, outputChannelAxis(n), options.per_channel, 8,
                                       options.balanced_rounding, wbase);
    n.setInput(1, wq.dequantized);
    if (!old_w->hasUses() && old_w->isInitializer() && !old_w->isGraphInput()) g.eraseValue(old_w);
    info.weight_scale_min = wq.scale_min;
    info.weight_scale_max = wq.scale_max;
    if (quantize_acts) {
      for (const std::string& a : t.activation_inputs) {
        NNC_ASSIGN_OR_RETURN(ActQuant aq, activationQdq(g, a, ranges, options, made));
        for (size_t i = 0; i < n.numInputs(); ++i)
          if (n.input(i) && n.input(i)->name() == a) n.setInput(i, aq.dequantized);
        info.act_scale = aq.params.scale;
        info.act_bits = options.act_bits;
      }
    }
    layers.push_back(info);
  }
  if (!plan.tensors.empty()) {
    NNC_ASSIGN_OR_RETURN(const OrtQdqStats s, applyOrtQdqPlan(model, plan, ranges, options));
    spdlog::info(
        "ort QDQ placement: {} Q/DQ pairs, {} int32 biases ({} weight scales raised), {} "
        "activations absorbed, {} other ops integer",
        s.tensors, s.int32_biases, s.bias_scale_raised, s.activations_absorbed,
        plan.integer_ops.size());
  }
  if (quantize_acts && model.opsetVersion("") >= 13) guardFloatLayersFromOrtWeightQuantization(g);
  for (QuantizedLayer& table : quantizeGatherTables(g, options)) layers.push_back(table);
  for (QuantizedLayer& layer : quantizeRecurrentWeights(g, options)) layers.push_back(layer);
  g.removeDeadNodes();
  NNC_RETURN_IF_ERROR(g.sortTopologically());
  return layers;
}

}  // namespace nnc::quant
