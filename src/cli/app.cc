#include "nncompress/cli/app.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "nncompress/cli/commands.h"

#ifndef NNC_VERSION
#define NNC_VERSION "dev"
#endif

namespace nnc::cli {

int exitCodeFor(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk:
      return kExitOk;
    case StatusCode::kTargetNotMet:
      return kExitTargetNotMet;
    case StatusCode::kInvalidArgument:
      return kExitUsage;
    case StatusCode::kInvalidModel:
    case StatusCode::kUnsupported:
    case StatusCode::kShapeMismatch:
      return kExitInvalidModel;
    case StatusCode::kIoError:
      return kExitIo;
    case StatusCode::kInternal:
      return kExitInternal;
  }
  return kExitInternal;
}

namespace {

constexpr const char* kExitCodeHelp =
    "Exit codes: 0 ok; 1 a requested target could not be met; 2 usage error; 3 invalid or "
    "unsupported model; 4 I/O error; 5 internal error (a bug: please report).";

void setUpLogging(int verbosity) {
  auto logger = spdlog::stderr_color_mt("nncompress");
  logger->set_pattern("nncompress: %^%l%$: %v");
  logger->set_level(verbosity < 0    ? spdlog::level::err
                    : verbosity == 0 ? spdlog::level::info
                                     : spdlog::level::debug);
  spdlog::set_default_logger(logger);
}

}  // namespace

int run(int argc, char** argv) {
  CLI::App app{"nncompress: make ONNX models small and fast for edge devices.", "nncompress"};
  app.footer(kExitCodeHelp);
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("nncompress ") + NNC_VERSION);
  int verbose = 0;
  bool quiet = false;
  app.add_flag("-v,--verbose", verbose, "More log output on stderr (repeat for more)");
  app.add_flag("-q,--quiet", quiet, "Only errors on stderr");

  ReportOptions report;
  CLI::App* report_cmd = app.add_subcommand(
      "report", "Inspect a model: inputs/outputs, ops, per-layer params and MACs, totals");
  report_cmd->add_option("MODEL", report.model_path, "The .onnx file to inspect")->required();
  report_cmd->add_flag("--json", report.json, "Print one JSON object (docs/report-json.md)");
  report_cmd->add_flag("--prunable", report.prunable,
                       "Also list prunable channel groups and why other layers are not prunable");
  report_cmd->footer(kExitCodeHelp);

  ConvertOptions convert;
  CLI::App* convert_cmd = app.add_subcommand(
      "convert", "Load and re-export a model (e.g. to move weights into external data)");
  convert_cmd->add_option("MODEL", convert.model_path, "The .onnx file to read")->required();
  convert_cmd->add_option("-o,--output", convert.output_path, "Where to write the model")
      ->required();
  convert_cmd
      ->add_option("--external-data", convert.external_data_threshold,
                   "Write tensors of at least this many bytes to OUT.data beside the model")
      ->check(CLI::NonNegativeNumber);
  convert_cmd->add_flag("--json", convert.json, "Print one JSON object");
  convert_cmd->footer(kExitCodeHelp);

  PruneOptions prune;
  CLI::App* prune_cmd = app.add_subcommand("prune",
                                           "Remove convolution channels (whole channel groups stay "
                                           "consistent) and write a smaller model");
  prune_cmd->add_option("MODEL", prune.model_path, "The .onnx file to prune")->required();
  prune_cmd->add_option("-o,--output", prune.output_path, "Where to write the pruned model")
      ->required();
  prune_cmd->add_option("--method", prune.method, "Channel importance criterion: l1, l2, random")
      ->capture_default_str();
  prune_cmd
      ->add_option("--ratio", prune.ratio, "Fraction of each prunable group's channels to remove")
      ->required()
      ->check(CLI::Range(0.0, 0.999));
  prune_cmd->add_option("--round-to", prune.round_to, "Keep channel counts multiples of N")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  prune_cmd->add_option("--exclude", prune.exclude, "Layer names whose channel groups stay whole");
  prune_cmd->add_option("--seed", prune.seed, "Seed for --method random")->capture_default_str();
  prune_cmd->add_flag("--json", prune.json, "Print one JSON object");
  prune_cmd->footer(kExitCodeHelp);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  setUpLogging(quiet ? -1 : verbose);

  Status status;
  try {
    if (report_cmd->parsed()) status = runReport(report);
    if (convert_cmd->parsed()) status = runConvert(convert);
    if (prune_cmd->parsed()) status = runPrune(prune);
  } catch (const std::exception& e) {
    status = internalError(std::string("unexpected exception: ") + e.what());
  }
  if (!status.isOk()) {
    spdlog::error("{}", status.message());
    if (status.code() == StatusCode::kInternal)
      spdlog::error("this is a bug in nncompress: please report it");
  }
  return exitCodeFor(status);
}

}  // namespace nnc::cli
