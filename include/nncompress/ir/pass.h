#pragma once
// Passes rewrite a Model in place. The PassManager runs them in order and, when asked (always in
// tests), verifies the graph after each one so a broken rewrite is caught where it happens.

#include <memory>
#include <string>
#include <vector>

#include "nncompress/ir/graph.h"

namespace nnc {

class Pass {
 public:
  virtual ~Pass() = default;
  virtual std::string name() const = 0;
  // Returns whether the pass changed the model.
  virtual StatusOr<bool> run(Model& model) = 0;
};

class PassManager {
 public:
  void add(std::unique_ptr<Pass> pass) { passes_.push_back(std::move(pass)); }
  void setVerifyAfterEachPass(bool verify) { verify_after_each_ = verify; }
  // Runs every pass once; returns whether any changed the model.
  StatusOr<bool> run(Model& model);

 private:
  std::vector<std::unique_ptr<Pass>> passes_;
  bool verify_after_each_ = false;
};

}  // namespace nnc
