/// \file schedule.hpp
/// \brief Learning-rate schedules: cosine annealing to a floor with optional linear warm-up
///        (ALGORITHM.md §8: lr(e) = ½·lr0·(1 + cos(π e/E)), no warm-up in the released config,
///        §11 A8), step decay (fine-tuning), and the linear scaling rule lr ∝ global batch.
#pragma once
#include <cmath>
#include <vector>

#include "../core/error.hpp"

namespace mscl::optim {

/// Linear scaling: the reference lr was tuned for `reference_batch` (MSCL: 0.02 at 128).
inline double scaled_lr(double reference_lr, double reference_batch, double global_batch) {
  MSCL_CHECK(reference_batch > 0 && global_batch > 0, value_error,
             "scaled_lr: batch sizes must be positive, got " << reference_batch << " and " << global_batch);
  return reference_lr * global_batch / reference_batch;
}

struct cosine_schedule {
  double base_lr = 0.02;
  double min_lr = 0.0;
  double total = 1;    ///< total length in the schedule's unit (epochs or iterations)
  double warmup = 0;   ///< linear warm-up length in the same unit (0 = none, the released setting)
  double warmup_start_ratio = 0.0;

  /// lr at position `t` (0 ≤ t ≤ total; epoch index for per-epoch updates as in MMCV).
  double operator()(double t) const {
    MSCL_CHECK(total > 0, value_error, "cosine_schedule: total must be positive, got " << total);
    const double pi = 3.14159265358979323846;
    const double cos_lr = min_lr + 0.5 * (base_lr - min_lr) * (1.0 + std::cos(pi * std::min(t, total) / total));
    if (warmup > 0 && t < warmup) {
      const double k = warmup_start_ratio + (1.0 - warmup_start_ratio) * (t / warmup);
      return cos_lr * k;
    }
    return cos_lr;
  }
};

/// lr0 · gamma^(number of milestones ≤ t) (MMAction2 "step" policy).
struct step_schedule {
  double base_lr = 0.1;
  std::vector<double> milestones;
  double gamma = 0.1;
  double operator()(double t) const {
    double lr = base_lr;
    for (double m : milestones)
      if (t >= m) lr *= gamma;
    return lr;
  }
};

}  // namespace mscl::optim
