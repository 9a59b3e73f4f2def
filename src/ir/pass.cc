#include "nncompress/ir/pass.h"

#include "nncompress/ir/verify.h"

namespace nnc {

StatusOr<bool> PassManager::run(Model& model) {
  bool changed_any = false;
  for (const auto& pass : passes_) {
    auto changed = pass->run(model);
    if (!changed.isOk()) return changed.status().withContext("in pass " + pass->name());
    changed_any |= changed.value();
    if (verify_after_each_) {
      Status s = verifyModel(model);
      if (!s.isOk()) return s.withContext("graph invalid after pass " + pass->name());
    }
  }
  return changed_any;
}

}  // namespace nnc
