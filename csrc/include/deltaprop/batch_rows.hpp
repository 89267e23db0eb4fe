// Gathering a shuffled batch: its rows copied from random places of X and T into contiguous
// buffers, A_0 of the step (fit_epoch, network.cpp).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "deltaprop/prefetch.hpp"

namespace deltaprop {

// A batch's rows: from samples ids[0..rows) of the row-major x (n_in wide) and t (n_out wide) to
// rows 0..rows of batch_x and batch_t.
template <typename T>
struct BatchRows {
  const T* x;
  const T* t;
  std::size_t n_in, n_out;
  const std::int64_t* ids;
  std::size_t rows;
  T* batch_x;
  T* batch_t;

  // Copy rows [begin, end), each asked for into L2 `ahead` rows before its copy, so that several
  // rows' misses overlap: the copy alone kept about one row's in flight, ~6 GB/s a core (AMD
  // EPYC, Zen 4), and requests into L1 wait for its few miss buffers as the copy's loads do.
  // Stops before the next row once `stop` (where given) is set; returns the row it stopped at.
  std::size_t copy(std::size_t begin, std::size_t end, std::size_t ahead,
                   const std::atomic<bool>* stop = nullptr) const {
    const auto ask = [&](std::size_t r, std::size_t count) {
      prefetch_rows<PrefetchTo::l2>(x, n_in, ids + r, count);
      prefetch_rows<PrefetchTo::l2>(t, n_out, ids + r, count);
    };
    ask(begin, std::min(ahead, end - begin));
    std::size_t r = begin;
    for (; r < end && !(stop && stop->load(std::memory_order_relaxed)); ++r) {
      if (ahead && r + ahead < end) ask(r + ahead, 1);
      const auto src = static_cast<std::size_t>(ids[r]);
      std::memcpy(batch_x + r * n_in, x + src * n_in, n_in * sizeof(T));
      std::memcpy(batch_t + r * n_out, t + src * n_out, n_out * sizeof(T));
    }
    return r;
  }
};

// The next batch of a shuffled epoch, of which a thread that the step leaves idle copies the
// first `copied` rows while the step runs (Network::beside_next_batch).
template <typename T>
struct NextBatch {
  BatchRows<T> batch;
  std::size_t copied = 0;
};

}  // namespace deltaprop
