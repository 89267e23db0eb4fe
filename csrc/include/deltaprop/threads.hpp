// How many threads the kernels use, and the parallel region they share (threads.cpp).
//
// Work is split into fixed shares, each written by one thread in a fixed order, so results never
// depend on the thread count: only speed does.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace deltaprop {

// Threads the kernels use: OpenMP's max threads in the calling thread, after the latest
// set_max_threads from any thread (threads.cpp), and at most thread_cap(); 1 without OpenMP.
int max_threads();
void set_max_threads(int n);

// The largest team the kernels ask for, 16 a processor: more never pays for arithmetic, and
// libgomp ends the process when it cannot create a thread (set_num_threads(10**6), then a 2048²
// product asked for ~8,000 threads and, under a 6 GB address-space limit, exited).
constexpr int threads_per_processor_cap = 16;
int thread_cap();

// How many threads a loop of `work` multiply-adds should use: small problems stay on one
// thread rather than pay for a parallel region they cannot use, and every loop stays on one
// for a while after a parallel region stalled (threads.cpp).
int threads_for(double work);

// Watches a parallel region for a stall: the calling thread waiting at the join far longer than
// its own share took, which another process holding a core causes.
class JoinWatch {
 public:
  JoinWatch();
  // Thread 0, inside the region, when its own share is done.
  void own_share_done();
  // The calling thread, after the region.
  void joined() const;

 private:
  std::int64_t start_, done_ = 0;
};

// Chunks of a loop in ranges that threads own: each thread takes its own range's chunks in
// order, then claims what is left of the others'. Loops that split alike keep each thread on the
// same data: a layer's forward, delta and gradient products all split W's columns, so a thread
// finds the columns it updated last step, and the deltas it computed, in its own cache (an
// MNIST-shaped fit at 2 threads, Intel Xeon: 6-10% faster than with chunks claimed from one
// counter in any order). And a thread slowed by another process is relieved by the others.
class ChunkClaims {
 public:
  // `chunks` chunks in `owners` ranges of nearly equal length.
  ChunkClaims(std::ptrdiff_t chunks, int owners);
  // The next chunk for thread `me`, or -1 once every chunk is claimed.
  std::ptrdiff_t next(std::ptrdiff_t me);

 private:
  struct alignas(64) Range {  // a cache line each: owners claim without sharing one
    std::atomic<std::ptrdiff_t> next{0};
    std::ptrdiff_t end = 0;
  };
  // Teams up to this size claim from ranges on the stack: a product's claims are made for every
  // shared GEMM, and the epoch loop allocates nothing a step.
  static constexpr int owners_in_place = 16;
  Range in_place_[owners_in_place];
  std::unique_ptr<Range[]> more_;
  Range* ranges_;
  std::ptrdiff_t n_;
};

// body(team, me) for each thread me of a team: in a parallel region watched for stalls, or
// called directly for one thread. Even a one-thread region (`if (false)`) costs libgomp ~0.2 µs
// to set up and tear down a team: 6% of a digits-shaped step, whose eight GEMMs all run alone.
template <typename Body>
void on_threads(int threads, const Body& body) {
#ifdef _OPENMP
  if (threads > 1) {
    JoinWatch watch;
#pragma omp parallel num_threads(threads)
    {
      const std::ptrdiff_t team = omp_get_num_threads(), me = omp_get_thread_num();
      body(team, me);
      if (me == 0) watch.own_share_done();
    }
    watch.joined();
    return;
  }
#endif
  body(std::ptrdiff_t(1), std::ptrdiff_t(0));
}

}  // namespace deltaprop
