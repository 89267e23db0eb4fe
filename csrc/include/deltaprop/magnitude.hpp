// The largest magnitude in an array: the divergence guard's bound on a step and the native
// module's check that inputs are finite both reduce to it, on every step and every call.
//
// max |x| is an integer maximum over raw bits. With the sign bit cleared, the bits of a float
// order exactly as its magnitude, infinity above every finite value and NaN above infinity, so
// one branch-free integer max answers both "how large" and "is anything not finite". It
// vectorises, where a floating-point max does not without -ffast-math (NaN has no order) and a
// compare-and-branch per element does not at all.
#pragma once

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "deltaprop/threads.hpp"

namespace deltaprop {

// max |x| over the elements of any number of stretches added to it, read as a double: infinity
// or NaN as soon as one element is not finite, 0 for none. Inline, for loops built for one ISA
// (the online step, the GEMM's epilogues) and for a few elements, where a call costs more than
// the scan. Whole 32-byte vectors are written as such: a scan of a known short width (an
// epilogue's row of 16) was unrolled into scalar code, one element at a time; and a block's rows
// share one reduction across the lanes, at the end.
template <typename T>
class LargestMagnitude {
  using Bits = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;
  typedef Bits Vector __attribute__((vector_size(32)));
  static constexpr Bits magnitude = static_cast<Bits>(~(std::uint64_t(1) << (8 * sizeof(Bits) - 1)));
  static constexpr std::size_t lanes = sizeof(Vector) / sizeof(Bits);

 public:
  void add(const T* p, std::size_t n) {
    std::size_t i = 0;
    for (; i + lanes <= n; i += lanes) {
      Vector bits;
      std::memcpy(&bits, p + i, sizeof bits);
      bits &= magnitude;
      wide_ = bits > wide_ ? bits : wide_;
    }
    for (; i < n; ++i) {
      Bits bits;
      std::memcpy(&bits, p + i, sizeof bits);
      bits &= magnitude;
      narrow_ = bits > narrow_ ? bits : narrow_;
    }
  }

  double value() const {
    Bits largest = narrow_;
    for (std::size_t k = 0; k < lanes; ++k) largest = wide_[k] > largest ? wide_[k] : largest;
    T value;
    std::memcpy(&value, &largest, sizeof value);
    return double(value);
  }

 private:
  Vector wide_{};
  Bits narrow_ = 0;
};

// max |p[i]| over n elements (LargestMagnitude of one stretch).
template <typename T>
inline double max_abs_inline(const T* p, std::size_t n) {
  LargestMagnitude<T> largest;
  largest.add(p, n);
  return largest.value();
}

// The larger of two magnitudes from max_abs, NaN above everything.
inline double larger_magnitude(double a, double b) { return std::isnan(b) || b > a ? b : a; }

// body(team, me, largest) for each thread of on_threads, each raising its own `largest` (a
// magnitude); returns the largest of them. Each thread folds its own into one atomic at its end:
// the largest of a set is the same in any order (NaN above everything), and no array is
// allocated for a region.
template <typename Body>
double largest_on_threads(int threads, const Body& body) {
  if (threads == 1) {
    double largest = 0;
    body(std::ptrdiff_t(1), std::ptrdiff_t(0), largest);
    return largest;
  }
  std::atomic<double> largest{0};
  on_threads(threads, [&](std::ptrdiff_t team, std::ptrdiff_t me) {
    double own = 0;
    body(team, me, own);
    double seen = largest.load(std::memory_order_relaxed);
    while (larger_magnitude(seen, own) != seen && !std::isnan(seen) &&
           !largest.compare_exchange_weak(seen, own, std::memory_order_relaxed)) {
    }
  });
  return largest.load(std::memory_order_relaxed);
}

// The same, with an AVX2 copy picked when the module loads, and split over threads for large
// arrays (magnitude.cpp).
double max_abs(const float* p, std::size_t n);
double max_abs(const double* p, std::size_t n);

}  // namespace deltaprop
