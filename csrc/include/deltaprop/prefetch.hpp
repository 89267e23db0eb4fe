// Asking for the rows of samples a later step will read. A shuffled epoch visits X and T in
// random order, and a row that misses the caches costs ~100 ns: longer than a whole online step
// of the reference posts' 2-3-1 network, and a tenth of a digits-shaped batch of 32 (its gather).
#pragma once

#include <cstddef>
#include <cstdint>

namespace deltaprop {

// An online epoch asks for the sample this many steps on: enough to hide a miss behind steps.
constexpr std::size_t online_prefetch_ahead = 8;

// Where a request leaves the lines: L1 (PREFETCHT0), for rows the very next loads read; or L2
// (PREFETCHT1), for whole rows a copy reads a little later. A request for L2 holds none of the
// L1's few miss buffers, so more rows' misses are in flight (the batch gather, batch_rows.hpp).
enum class PrefetchTo { l1 = 3, l2 = 2 };

// Ask for the cache line at p. Where the CPU has SSE's prefetches (every x86-64), as an instruction
// the compiler must keep: a loop whose body is only __builtin_prefetch has no side effect to GCC,
// which may assume it ends (-ffinite-loops, on from -O2 in C++) and delete it. GCC 12 at -O3
// deleted prefetch_rows' loop in the batch gather (BatchRows::copy): the module held no PREFETCHT1
// at all, and the gather waited out each row's misses in turn.
template <PrefetchTo to>
inline void prefetch_line(const void* p) {
#if defined(__SSE__)
  if constexpr (to == PrefetchTo::l1)
    asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
  else
    asm volatile("prefetcht1 %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p, 0, static_cast<int>(to));
#endif
}

// Prefetch rows[0..count) of the row-major array at base (row_length elements a row).
template <PrefetchTo to, typename T>
inline void prefetch_rows(const T* base, std::size_t row_length, const std::int64_t* rows,
                          std::size_t count) {
  constexpr std::uintptr_t line = 64;
  for (std::size_t r = 0; r < count; ++r) {
    const auto first = reinterpret_cast<std::uintptr_t>(base + rows[r] * row_length);
    const std::uintptr_t end = first + row_length * sizeof(T);
    for (std::uintptr_t at = first & ~(line - 1); at < end; at += line)
      prefetch_line<to>(reinterpret_cast<const void*>(at));
  }
}

}  // namespace deltaprop
