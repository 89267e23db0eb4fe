// Gathering a shuffled batch: its rows copied from random places of X and T into contiguous
// buffers, A_0 of the step (fit_epoch, epoch.cpp).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "deltaprop/prefetch.hpp"

namespace deltaprop {

// Copy `bytes` from src to dst past the caches (non-temporal stores), where the CPU has them:
// the lines go to memory and no core's cache holds them afterwards. A caller that streams must
// end with stream_fence() before another thread reads what it wrote.
inline void stream_copy(void* dst, const void* src, std::size_t bytes) {
#if defined(__SSE2__)
  auto* d = static_cast<char*>(dst);
  const auto* s = static_cast<const char*>(src);
  constexpr std::size_t width = sizeof(__m128i);
  // Plain stores up to dst's first 16-byte boundary and after its last: streams must be aligned.
  const std::size_t past = reinterpret_cast<std::uintptr_t>(d) % width;
  const std::size_t head = std::min(bytes, past ? width - past : 0);
  std::memcpy(d, s, head);
  std::size_t i = head;
  for (; i + width <= bytes; i += width)
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i),
                     _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i)));
  std::memcpy(d + i, s + i, bytes - i);
#else
  std::memcpy(dst, src, bytes);
#endif
}

// Non-temporal stores are weakly ordered: fence them before the rows are handed on.
inline void stream_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

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
  // X's rows streamed to memory rather than left in the copying core's cache (stream_copy).
  // Where two cores read the whole batch and sit far apart (a virtual machine's vCPUs ~330 ns
  // apart, a cache line's round trip), each reads half the rows from the other's cache at that
  // distance: an MNIST-shaped fit at 2 threads then ran ~6% faster streamed. Near, or on one
  // core, the rows are read sooner from the caches (1-1.5% faster), so fit_epoch measures the
  // distance (round_trip.hpp).
  bool streamed = false;

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
      if (streamed)
        stream_copy(batch_x + r * n_in, x + src * n_in, n_in * sizeof(T));
      else
        std::memcpy(batch_x + r * n_in, x + src * n_in, n_in * sizeof(T));
      std::memcpy(batch_t + r * n_out, t + src * n_out, n_out * sizeof(T));
    }
    if (streamed) stream_fence();
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
