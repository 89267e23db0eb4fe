// The native epoch loop (Network::fit_epoch): shuffle, gather each batch, step, report progress,
// with Python reached only through the progress callback.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "deltaprop/network.hpp"
#include "deltaprop/prefetch.hpp"
#include "deltaprop/round_trip.hpp"
#include "deltaprop/threads.hpp"

namespace deltaprop {

namespace {

// Gathered rows are streamed (BatchRows::streamed) while a cache line takes longer than this
// to go to the other thread's core and back: longer than the line would take from memory, which
// is where a streamed row is read from. On the Zen 4 EPYC, vCPUs ~55 ns apart gained nothing
// from it (an MNIST-shaped fit at 2 threads 1.2% slower, at 1 thread 1.5%), ~330-540 ns apart
// they did (6.5% faster).
std::atomic<double> stream_beyond_ns{150};

// The round trip is measured in every this many gathers (~1-6 µs; an MNIST-shaped step ~700).
constexpr std::size_t round_trip_every = 64;

// Prefetching a batch larger than this stalls the loop that asks: the requests queue behind the
// core's few line-fill buffers. An MNIST-shaped fit (401 KB a batch) trained 3% faster without
// them; its 3 KB rows are long enough for the hardware prefetcher to follow each one.
constexpr std::size_t prefetch_up_to_bytes = 32 * 1024;

// Sorting an epoch's order costs about as much a sample (6.6 ns) as 700 multiply-adds of a GEMM,
// the unit of threads_for: a second thread is worth its region from a few thousand samples on.
constexpr double sort_work_per_sample = 700.0;

}  // namespace

double set_stream_beyond_round_trip_ns(double ns) { return stream_beyond_ns.exchange(ns); }

template <typename T>
typename Network<T>::EpochResult Network<T>::fit_epoch(
    const T* x, const T* t, std::size_t n, std::size_t batch_size, bool shuffle,
    std::uint64_t seed, std::uint64_t epoch, const OptimizerStep<T>& opt,
    const Progress& progress, double x_largest) {
  const std::size_t n_in = sizes_[0], n_out = sizes_.back();
  if (shuffle) {
    if (next_epoch_order_.holds(n, seed, epoch))
      std::swap(epoch_order_, next_epoch_order_);
    else
      epoch_order_.compute(n, seed, epoch);
  }
  const std::vector<std::int64_t>& order = epoch_order_.order;
  std::size_t copied_ahead = 0;  // rows of this step's batch that the step before copied
  // Read the clock about every 2^20 multiply-adds (tens of microseconds), not every step: an
  // online step of a tiny network is shorter than the clock read itself.
  const std::size_t clock_stride = std::max<std::size_t>(
      1, (std::size_t(1) << 20) / std::max<std::size_t>(1, multiply_adds_per_row() * batch_size));
  using clock = std::chrono::steady_clock;
  auto last_report = clock::now();
  std::size_t steps_to_clock = clock_stride;
  EpochResult result;
  const double batch_share = double(batch_size) / double(n);  // a full batch's weight in the mean
  auto keep_going = [&] {  // the progress callback, at most every 0.1 s; false: stop the epoch
    if (clock::now() - last_report < std::chrono::milliseconds(100)) return true;
    last_report = clock::now();
    if (progress(result.samples, result.loss_mean * static_cast<double>(n))) return true;
    result.stopped = true;
    return false;
  };
  // Networks one vector wide train on tiny_ for the whole epoch (online_tiny.cpp), in runs of
  // steps between reads of the clock.
  if (tiny_fits(batch_size, opt)) {
    tiny_load();
    // A tiny step is one chain of dependent operations on one core. A second thread meanwhile
    // sorts the next epoch's order, which would otherwise cost the next epoch 6.6 ns a sample of
    // the ~60 a 2-3-1 sample takes. (A failed allocation there leaves that order unsorted.)
    const int threads = shuffle ? std::min(2, threads_for(double(n) * sort_work_per_sample)) : 1;
    on_threads(threads, [&](std::ptrdiff_t, std::ptrdiff_t me) {
      if (me == 0) {
        while (result.samples < n) {
          const std::size_t end = progress ? std::min(n, result.samples + clock_stride) : n;
          tiny_run(x, t, n, shuffle ? order.data() : nullptr, end, batch_share, opt, result);
          if (result.diverged || (progress && !keep_going())) break;
        }
      } else if (me == 1) {
        try {
          next_epoch_order_.compute(n, seed, epoch + 1);
        } catch (...) {
        }
      }
    });
    tiny_store();
    return result;
  }
  // A shuffled batch is gathered into contiguous rows (A_0 of the step); an unshuffled one is
  // used where it lies. Steps alternate between two buffers: while one step reads a batch from
  // one, a thread its one-thread phases leave idle copies rows of the next into the other. They
  // are the epoch's own (four allocations an epoch): kept in the network, a full-batch fit's
  // would hold two copies of X after it.
  Buffer<T> batch_x[2], batch_t[2];
  if (shuffle)
    for (int i = 0; i < 2; ++i) {
      reserve(batch_x[i], std::min(batch_size, n) * n_in);
      reserve(batch_t[i], std::min(batch_size, n) * n_out);
    }
  int current = 0;
  // A batch this small is asked for the step before its own: see prefetch_up_to_bytes.
  const auto asked_a_step_ahead = [&](std::size_t count) {
    return count * (n_in + n_out) * sizeof(T) <= prefetch_up_to_bytes;
  };
  for (std::size_t start = 0, index = 0; start < n; start += batch_size, ++index) {
    const std::size_t rows = std::min(batch_size, n - start);
    const T* bx = x + start * n_in;
    const T* bt = t + start * n_out;
    if (shuffle) {  // the samples `ahead` steps on: enough to hide a miss behind the steps
      const std::size_t ahead = rows == 1 ? online_prefetch_ahead : 1;
      const std::size_t next = start + ahead * batch_size;
      const std::size_t count = next < n ? std::min(batch_size, n - next) : 0;
      // An online sample into L1: read eight short steps on, it is still there (into L2,
      // 64-128-64-10 online ran 2-3% slower). A batch into L2: asked for into L1 a whole step
      // ahead, a digits-shaped batch still took as long to gather as from memory (1.7-2 µs of
      // a ~29 µs step at 2 threads); into L2, the fit ran 3% faster at 1 thread and 4% at 2
      // (paired in one process, 8 and 10 rounds, Zen 4 EPYC).
      if (asked_a_step_ahead(count)) {
        if (rows == 1) {
          prefetch_rows<PrefetchTo::l1>(x, n_in, order.data() + next, count);
          prefetch_rows<PrefetchTo::l1>(t, n_out, order.data() + next, count);
        } else {
          prefetch_rows<PrefetchTo::l2>(x, n_in, order.data() + next, count);
          prefetch_rows<PrefetchTo::l2>(t, n_out, order.data() + next, count);
        }
      }
    }
    if (shuffle && rows == 1) {  // one row is contiguous where it lies
      bx = x + order[start] * n_in;
      bt = t + order[start] * n_out;
    } else if (shuffle) {
      // Rows read from random places cost ~0.5 ns an element (an MNIST-shaped batch: 57 µs, a
      // tenth of its step at 2 threads), some 40 multiply-adds' worth: shared between threads
      // from the same amount of work as a GEMM, the MNIST-shaped gather took 31 µs.
      constexpr double multiply_adds_per_element = 40;
      const std::size_t left = rows - copied_ahead;
      const double work = double(left) * double(n_in + n_out) * multiply_adds_per_element;
      // A batch small enough to be asked for a whole step ahead is in the caches already, and
      // is not streamed past them.
      const bool in_cache = asked_a_step_ahead(rows);
      const BatchRows<T> batch{x, t, n_in, n_out, order.data() + start, rows,
                               batch_x[current].data(), batch_t[current].data(),
                               stream_batches_ && !in_cache};
      const bool probe = !in_cache && index % round_trip_every == 0;
      alignas(64) std::atomic<std::int64_t> ball{0};
      double round_trip = 0;  // stays 0 where the gather runs on one thread
      on_threads(threads_for(work), [&](std::ptrdiff_t team, std::ptrdiff_t me) {
        if (probe) time_round_trip(ball, team, me, round_trip);
        batch.copy(copied_ahead + left * me / team, copied_ahead + left * (me + 1) / team,
                   in_cache ? 0 : 2);
      });
      // (NaN, threads that did not meet in time as they share a CPU, never streams.)
      if (probe) stream_batches_ = round_trip > stream_beyond_ns.load();
      bx = batch_x[current].data();
      bt = batch_t[current].data();
    }
    // The next batch's rows, copied during this step where a thread is idle (not those asked
    // for a step ahead: their gather is a copy from L2). MNIST-shaped, 2 threads: ~40% of the
    // rows, copied during the 10-wide layer's phases; the gather 31-32 → 20 µs, the step
    // 659-661 → 651 µs (each one-thread phase ~0.5 µs longer for its region).
    const std::size_t next_start = start + batch_size;
    const bool copy_ahead = shuffle && rows > 1 && next_start < n && !asked_a_step_ahead(rows);
    NextBatch<T> next{};
    if (copy_ahead)
      next.batch = {x, t, n_in, n_out, order.data() + next_start,
                    std::min(batch_size, n - next_start), batch_x[1 - current].data(),
                    batch_t[1 - current].data(), stream_batches_};
    const double loss = train_step(bx, bt, rows, opt, x_largest, copy_ahead ? &next : nullptr);
    copied_ahead = next.copied;
    current = 1 - current;
    if (!std::isfinite(loss)) {
      result.diverged = true;
      result.batch = index;
      break;
    }
    result.loss_mean += loss * (rows == batch_size ? batch_share : double(rows) / double(n));
    result.samples += rows;
    if (progress && --steps_to_clock == 0) {  // a countdown: a division per step costs ~10 ns
      steps_to_clock = clock_stride;
      if (!keep_going()) break;
    }
  }
  return result;
}

// Every member defined here (network.hpp declares the class's instantiations extern).
template Network<float>::EpochResult Network<float>::fit_epoch(
    const float*, const float*, std::size_t, std::size_t, bool, std::uint64_t, std::uint64_t,
    const OptimizerStep<float>&, const Progress&, double);
template Network<double>::EpochResult Network<double>::fit_epoch(
    const double*, const double*, std::size_t, std::size_t, bool, std::uint64_t, std::uint64_t,
    const OptimizerStep<double>&, const Progress&, double);

}  // namespace deltaprop
