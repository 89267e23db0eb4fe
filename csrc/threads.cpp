// The thread policy of every parallel loop (threads.hpp): how many threads, and when to stay on
// one because another process holds a core.
#include "deltaprop/threads.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

namespace deltaprop {

namespace {
// dp.set_num_threads applies to every Python thread, while OpenMP's own setting belongs to the
// thread that made it. So a request is counted, and each thread, at its first call into the
// kernels after one, makes it its own OpenMP setting; from then on it follows OpenMP's setting
// in that thread, which is what threadpoolctl's limits change (as for PyTorch's
// set_num_threads). The stored count once overrode OpenMP's setting for good, and a limit taken
// afterwards was ignored: set_num_threads(2), then threadpool_limits(1) still ran two threads.
std::atomic<int> requested_threads{0};
std::atomic<unsigned> requests_made{0};
thread_local unsigned requests_seen = 0;
}  // namespace

int thread_cap() {
  // Counted once: libgomp asks the kernel for the thread's affinity at each omp_get_num_procs
  // (~170 ns here), and max_threads runs before every parallel loop.
#ifdef _OPENMP
  static const int cap = threads_per_processor_cap * omp_get_num_procs();
#else  // counts are accepted as they would be with OpenMP, and run on one thread
  static const int cap =
      threads_per_processor_cap * static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
#endif
  return cap;
}

int max_threads() {
#ifdef _OPENMP
  const unsigned made = requests_made.load(std::memory_order_acquire);
  if (requests_seen != made) {
    requests_seen = made;
    omp_set_num_threads(requested_threads.load(std::memory_order_relaxed));
  }
  return std::min(omp_get_max_threads(), thread_cap());
#else
  return 1;
#endif
}

void set_max_threads(int n) {
  requested_threads.store(n, std::memory_order_relaxed);
  requests_made.fetch_add(1, std::memory_order_release);
  max_threads();  // this thread's setting now, so that omp_get_max_threads agrees at once
}

namespace {

// A parallel region ends only when every thread of it has finished, and where another process
// competes for a core, a thread of ours can wait a whole scheduler slice (milliseconds) for it
// while its partner spins at the join: two threads then trained 10–20× slower than one (an
// MNIST-shaped fit at 2 threads beside a niced busy loop: 7k against 82k samples/s). So each
// parallel region compares the calling thread's wait at the join with its own share of the work;
// a wait longer than the work and than 1 ms sends every loop to one thread for a period, after
// which two threads are tried again. Results do not depend on the thread count: only speed does.
// (Waking a sleeping OpenMP worker on a quiet virtual machine sometimes takes over 100 µs, and a
// 100 µs floor made an MNIST-shaped fit back off needlessly: 144k against 162k samples/s.)
//
// That one-thread period starts at 5 ms and doubles, up to 200 ms, whenever two threads stall
// again within one period of the last one's end. A quiet virtual machine also stalls now and then
// for a millisecond or more (its host runs something else): a fixed 50 ms period put a tenth of
// an MNIST-shaped fit's GEMMs on one thread. A competitor that stays gets ever longer periods,
// each costing one stalled region.
constexpr std::int64_t first_backoff_ns = 5'000'000, longest_backoff_ns = 200'000'000;
std::atomic<std::int64_t> one_thread_until{0};  // steady-clock nanoseconds; 0: never set
std::atomic<std::int64_t> backoff_ns{first_backoff_ns};  // the latest period's length

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Called after a stall that ended at `now`.
void back_off(std::int64_t now) {
  const std::int64_t until = one_thread_until.load(std::memory_order_relaxed);
  const std::int64_t last = backoff_ns.load(std::memory_order_relaxed);
  const bool again = until != 0 && now - until < last;
  const std::int64_t length = again ? std::min(2 * last, longest_backoff_ns) : first_backoff_ns;
  backoff_ns.store(length, std::memory_order_relaxed);
  one_thread_until.store(now + length, std::memory_order_relaxed);
}

}  // namespace

int threads_for(double work) {
  // Below ~2^20 multiply-adds per thread (~10 µs) the fork/join and barriers of a parallel
  // region cost more than another core saves.
  constexpr double min_work_per_thread = 1048576.0;
#ifdef _OPENMP
  // Work within a parallel region (a block of an inference) is its thread's alone.
  if (omp_in_parallel()) return 1;
#endif
  const std::int64_t until = one_thread_until.load(std::memory_order_relaxed);
  if (until != 0 && now_ns() < until) return 1;
  const int available = max_threads();
  const double useful = work / min_work_per_thread;
  return useful >= available ? available : std::max(1, static_cast<int>(useful));
}

JoinWatch::JoinWatch() : start_(now_ns()) {}

void JoinWatch::own_share_done() { done_ = now_ns(); }

void JoinWatch::joined() const {
  const std::int64_t end = now_ns(), wait = end - done_, work = done_ - start_;
  if (wait > work && wait > 1'000'000) back_off(end);
}

ChunkClaims::ChunkClaims(std::ptrdiff_t chunks, int owners)
    : more_(owners > owners_in_place ? new Range[static_cast<std::size_t>(owners)] : nullptr),
      ranges_(more_ ? more_.get() : in_place_),
      n_(std::max(owners, 1)) {
  for (std::ptrdiff_t t = 0; t < n_; ++t) {
    ranges_[t].next.store(chunks * t / n_, std::memory_order_relaxed);
    ranges_[t].end = chunks * (t + 1) / n_;
  }
}

std::ptrdiff_t ChunkClaims::next(std::ptrdiff_t me) {
  // Every chunk below a range's end is handed out once, by its counter; a team smaller than
  // the owners asked for finishes the missing threads' ranges.
  for (std::ptrdiff_t i = 0; i < n_; ++i) {
    Range& range = ranges_[(me + i) % n_];
    if (range.next.load(std::memory_order_relaxed) >= range.end) continue;
    const std::ptrdiff_t chunk = range.next.fetch_add(1, std::memory_order_relaxed);
    if (chunk < range.end) return chunk;
  }
  return -1;
}

}  // namespace deltaprop
