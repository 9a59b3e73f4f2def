#include "data_options.h"

#include <spdlog/spdlog.h>

namespace nnc::cli {

StatusOr<data::Preprocess> preprocessFrom(const DataOptions& o) {
  data::Preprocess p;
  const std::pair<const char*, const std::string*> flags[] = {{"scale", &o.scale},
                                                              {"mean", &o.mean},
                                                              {"std", &o.std},
                                                              {"size", &o.size},
                                                              {"center-crop", &o.center_crop},
                                                              {"channels", &o.channels}};
  for (const auto& [name, value] : flags) {
    if (value->empty()) continue;
    Status s = data::setPreprocessOption(p, name, *value);
    if (!s.isOk()) return invalidArgument("--" + std::string(name) + ": " + s.message());
  }
  return p;
}

StatusOr<std::optional<data::DataRange>> rangeFrom(const DataOptions& o) {
  if (o.range.empty()) return std::optional<data::DataRange>();
  auto range = data::parseDataRange(o.range);
  if (!range.isOk()) return range.status().withContext(o.range_flag);
  return std::optional<data::DataRange>(*range);
}

StatusOr<std::unique_ptr<data::SampleReader>> openReader(const DataOptions& o, const char* role) {
  NNC_ASSIGN_OR_RETURN(data::Preprocess pre, preprocessFrom(o));
  NNC_ASSIGN_OR_RETURN(const std::optional<data::DataRange> range, rangeFrom(o));
  auto reader = data::openData(
      o.data, pre,
      o.unlabelled ? data::FolderLayout::kUnlabelled : data::FolderLayout::kClassSubfolders);
  if (reader.isOk() && range) reader = data::sliceData(std::move(reader).value(), *range);
  if (!reader.isOk()) return reader.status().withContext(o.data);
  spdlog::info("{}: {}", role, (*reader)->description());
  return reader;
}

StatusOr<std::optional<std::vector<int64_t>>> openLabels(const DataOptions& o,
                                                         const data::SampleReader& reader) {
  if (!o.labels.empty()) {
    NNC_ASSIGN_OR_RETURN(const std::optional<data::DataRange> range, rangeFrom(o));
    auto l = data::readLabels(o.labels);
    if (l.isOk() && range) l = data::sliceLabels(*l, *range);
    if (!l.isOk()) return l.status().withContext(o.labels);
    return std::optional<std::vector<int64_t>>(std::move(l).value());
  }
  return reader.labels();
}

}  // namespace nnc::cli
