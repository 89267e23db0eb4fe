// How far apart the cores of a team's first two threads are: the time a cache line takes to go
// from one to the other and back (bench/core_to_core.c measures the same from outside).
//
// A virtual machine's vCPUs are placed on the host's cores by its scheduler, and the placement
// changes while the guest runs: on a 2-vCPU AMD EPYC (Zen 4) a round trip took ~55 ns for
// minutes, then ~330-540 ns for minutes. Which way a batch is best gathered depends on it
// (BatchRows::streamed), and only a measurement tells.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace deltaprop {

// A line passed back and forth: it goes out odd from thread 0 and comes back even from thread 1.
// Both call this at once with the same ball, which starts at 0; thread 0 gets the mean round
// trip in nanoseconds, thread 1 0. The first round trips, which wait for the threads to arrive,
// are not timed. Where the two threads share a CPU (more threads than CPUs), each would spin
// through its time slice before the other could answer: a side that waits longer than it
// should (200 µs to arrive, 100 µs a round trip after) gives up and sets the ball to -1 for the
// other, and thread 0 gets NaN.
inline double round_trip_ns(std::atomic<std::int64_t>& ball, std::ptrdiff_t me) {
  constexpr std::int64_t untimed = 2, timed = 16;
  using clock = std::chrono::steady_clock;
  const auto wait_for = [&](std::int64_t value, clock::duration longest) {
    const clock::time_point began = clock::now();
    for (std::uint32_t spins = 1;; ++spins) {
      const std::int64_t seen = ball.load(std::memory_order_acquire);
      if (seen == value) return true;
      if (seen < 0) return false;
      if (spins % 64 == 0 && clock::now() - began > longest) {
        ball.store(-1, std::memory_order_release);
        return false;
      }
    }
  };
  clock::time_point start;
  for (std::int64_t i = 0; i < untimed + timed; ++i) {
    const clock::duration longest = i < untimed ? std::chrono::microseconds(200)
                                                : std::chrono::microseconds(100);
    if (me == 0) {
      if (i == untimed) start = clock::now();
      ball.store(2 * i + 1, std::memory_order_release);
      if (!wait_for(2 * i + 2, longest)) return std::numeric_limits<double>::quiet_NaN();
    } else {
      if (!wait_for(2 * i + 1, longest)) return 0;
      ball.store(2 * i + 2, std::memory_order_release);
    }
  }
  if (me != 0) return 0;
  return std::chrono::duration<double, std::nano>(clock::now() - start).count() / timed;
}

// For the body of a team's region: its threads 0 and 1 time the round trip, and thread 0 writes
// it to `ns`; a team of one, and threads 2 on, leave `ns` as it was.
inline void time_round_trip(std::atomic<std::int64_t>& ball, std::ptrdiff_t team,
                            std::ptrdiff_t me, double& ns) {
  if (team < 2 || me > 1) return;
  const double measured = round_trip_ns(ball, me);
  if (me == 0) ns = measured;
}

}  // namespace deltaprop
