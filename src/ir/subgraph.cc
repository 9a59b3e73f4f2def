#include "nncompress/ir/subgraph.h"

#include <atomic>

namespace nnc {
namespace {
std::atomic<SubgraphParser> g_parser{nullptr};
}  // namespace

void setSubgraphParser(SubgraphParser parser) { g_parser.store(parser); }

StatusOr<Model> parseSubgraph(const std::string& serialized, const Model& parent) {
  const SubgraphParser parser = g_parser.load();
  if (!parser) return unsupported("subgraphs cannot be parsed here (no model loader linked)");
  return parser(serialized, parent);
}

}  // namespace nnc
