// Which of two ways to run the same step is faster here and now, found by timing both.
//
// A step split between two cores (split_step.cpp) moves its weights, activations and deltas
// between them every step. On a virtual machine whose two vCPUs the host keeps ~55 ns apart (a
// cache line's round trip), a digits-shaped step runs ~1.3× faster so; where the host places them
// ~330 ns apart, as it does for minutes at a time, 2× slower than on one core. No fixed rule can
// tell the two apart, so the step times both ways, keeps to the faster and now and then tries
// the other again. Both give the same bits, so the choice only moves the speed.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>

namespace deltaprop {

class FasterOfTwo {
 public:
  // Forget what was timed (the steps to come are of another size).
  void reset() { *this = FasterOfTwo(); }

  // The way (0 or 1) to run the next step.
  int choose() {
    ++steps_;
    for (int way : {0, 1})
      if (timed_[way] < warm_up) return way;
    const int faster = ns_[1] < ns_[0] ? 1 : 0;
    return steps_ % retry_every == 0 ? 1 - faster : faster;
  }

  // What the step run the chosen way took.
  void record(int way, double ns) {
    ++timed_[way];
    if (timed_[way] == 1) return;  // the first step each way pays for first touches
    if (timed_[way] == 2) {
      ns_[way] = ns;
      return;
    }
    // A moving average (over ~4 steps) of times clipped at twice it: a step the host stalled
    // for a millisecond must not decide the next hundred.
    ns_[way] += (std::min(ns, 2 * ns_[way]) - ns_[way]) / 4;
  }

 private:
  // Steps each way before the faster is chosen (the first not counted); then every
  // retry_every-th step runs the slower way, so a change of the host's placement is seen within
  // a few such steps (~20 ms of a digits-shaped fit). Split steps 2× slower, retried one step
  // in 64, cost a digits-shaped fit 1-2%; one in 128 halves that.
  static constexpr std::int64_t warm_up = 5, retry_every = 128;
  double ns_[2] = {0, 0};
  std::int64_t timed_[2] = {0, 0}, steps_ = 0;
};

// A FasterOfTwo for each of the last two sizes of step asked for: a fit's full batches and its
// last, shorter one keep their own timings, where one for the latest size would start again
// twice an epoch.
class FasterOfTwoBySize {
 public:
  FasterOfTwo& at(std::size_t size) {
    if (sizes_[0] != size) {
      if (sizes_[1] != size) {
        sizes_[1] = size;
        choices_[1].reset();
      }
      std::swap(sizes_[0], sizes_[1]);
      std::swap(choices_[0], choices_[1]);
    }
    return choices_[0];
  }

 private:
  std::size_t sizes_[2] = {0, 0};  // the latest first
  FasterOfTwo choices_[2];
};

}  // namespace deltaprop
