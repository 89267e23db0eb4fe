// max |x| as an integer maximum over raw bits. With the sign bit cleared, the bits of a float
// order exactly as its magnitude, infinity above every finite value and NaN above infinity, so
// one branch-free integer max answers both "how large" and "is anything not finite". It
// vectorises, where a floating-point max does not without -ffast-math (NaN has no order) and a
// compare-and-branch per element does not at all; target_clones adds an AVX2 copy, picked when
// the module loads.
#include "deltaprop/magnitude.hpp"

#include <cstdint>
#include <cstring>

namespace deltaprop {

namespace {

template <typename Bits, typename T>
__attribute__((always_inline)) inline double max_abs_bits(const T* p, std::size_t n) {
  static_assert(sizeof(Bits) == sizeof(T), "one integer per element");
  constexpr Bits magnitude = static_cast<Bits>(~(std::uint64_t(1) << (8 * sizeof(Bits) - 1)));
  Bits largest = 0;
  for (std::size_t i = 0; i < n; ++i) {
    Bits bits;
    std::memcpy(&bits, p + i, sizeof bits);
    bits &= magnitude;
    largest = bits > largest ? bits : largest;
  }
  T value;
  std::memcpy(&value, &largest, sizeof value);
  return double(value);
}

}  // namespace

__attribute__((target_clones("avx2", "default"))) double max_abs(const float* p, std::size_t n) {
  return max_abs_bits<std::int32_t>(p, n);
}

__attribute__((target_clones("avx2", "default"))) double max_abs(const double* p, std::size_t n) {
  return max_abs_bits<std::int64_t>(p, n);
}

}  // namespace deltaprop
