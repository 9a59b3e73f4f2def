#pragma once
// The state of a fine-tuning run on disk (internal to finetune.cc): weights, optimiser state,
// position in the data and the best epoch so far. One binary file, written atomically
// (temporary file, then rename), so an interrupted write leaves the previous checkpoint intact.

#include <cstdint>
#include <string>
#include <vector>

#include "nncompress/ir/status.h"
#include "nncompress/ir/tensor.h"

namespace nnc::internal {

struct FinetuneCheckpoint {
  // Identifies the run: a checkpoint of another run (other seed, data, batch, epochs or weights)
  // is refused rather than silently mixed in.
  uint64_t seed = 0;
  int64_t samples = 0, batch = 0, epochs = 0;
  // Position: epoch (0-based) and batches done in it; steps over the whole run.
  int64_t epoch = 0, step_in_epoch = 0, global_step = 0, optimizer_steps = 0;
  double epoch_loss_sum = 0;
  int64_t best_epoch = 0;  // 1-based, 0: none
  double best_metric = 0;
  std::vector<std::string> names;   // parameter names, in tape order
  std::vector<Tensor> params;       // current values
  std::vector<Tensor> state;        // optimiser state tensors
  std::vector<Tensor> best_params;  // empty when best_epoch == 0
};

std::string checkpointPath(const std::string& dir);
Status saveCheckpoint(const std::string& dir, const FinetuneCheckpoint& checkpoint);
// kNotFound-like: returns false in `found` when the directory holds no checkpoint.
StatusOr<bool> loadCheckpoint(const std::string& dir, FinetuneCheckpoint& checkpoint);

}  // namespace nnc::internal
