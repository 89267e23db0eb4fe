// exp written to vectorise, and the sigmoid and tanh built on its parts.
//
// Every function is branch-free straight-line arithmetic (selects, not branches; no libm call),
// so a loop over them compiles to SIMD at whatever width the surrounding code is built for. Each
// also takes a GCC vector of float or double (the online step of tiny networks keeps a layer in
// one vector): the same operations, lane by lane.
//
// Method: x = n·ln2 + r with |r| <= ln2/2 (ln2 split in two parts so r is exact), expm1(r) by a
// polynomial, then exp(x) = 2^n (1 + expm1(r)), and for tanh expm1(x) = 2^n expm1(r) + (2^n - 1),
// which loses no accuracy to cancellation near 0. Measured maximum error against NumPy over the
// whole range (tests/test_exp.py), against the exact value in long double: sigmoid and tanh within
// 2.5 ulp for float32 and float64 (float64: ~5e-16 relative), on every ISA.
// Results below the smallest normal number are flushed to zero, or come out subnormal (sigmoid, for
// |z| up to ~0.35 past it): either way within less than that number; above the largest, exp is +inf.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>

namespace deltaprop {

template <typename T>
struct ExpConstants;

template <>
struct ExpConstants<float> {
  using Bits = std::int32_t;
  static constexpr int mantissa_bits = 23, exponent_bias = 127;
  static constexpr float max_arg = 88.72283905206835f;    // log(FLT_MAX)
  static constexpr float min_arg = -87.33654475055310f;   // log(FLT_MIN)
  static constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;  // Cephes split
  static constexpr float shifter = 12582912.0f;           // 1.5·2^23: adding it rounds to int
  static constexpr float flushed_from = 100.0f;           // reduce(-x)'s 2^n is 0 from x ≈ 88.4
  // expm1(r) = r + r²·P(r), Cephes expf's minimax P on |r| <= ln2/2
  static constexpr int degree = 6;
  static constexpr float coefficients[degree] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                                                 4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
};

template <>
struct ExpConstants<double> {
  using Bits = std::int64_t;
  static constexpr int mantissa_bits = 52, exponent_bias = 1023;
  static constexpr double max_arg = 709.782712893384;     // log(DBL_MAX)
  static constexpr double min_arg = -708.3964185322641;   // log(DBL_MIN)
  static constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  static constexpr double shifter = 6755399441055744.0;   // 1.5·2^52
  static constexpr double flushed_from = 720.0;           // reduce(-x)'s 2^n is 0 from x ≈ 709.4
  // expm1(r) = r + r²·P(r), P the Taylor series 1/2! + r/3! + ... + r^11/13! (remainder < 1e-17)
  static constexpr int degree = 12;
  static constexpr double coefficients[degree] = {
      1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
      1.0 / 362880.0,     1.0 / 40320.0,     1.0 / 5040.0,      1.0 / 720.0,
      1.0 / 120.0,        1.0 / 24.0,        1.0 / 6.0,         1.0 / 2.0};
};

namespace detail {

// The element type of T (T itself for a scalar), and integers of the same width and lane count,
// signed and unsigned.
template <typename T, typename = void>
struct Lanes {
  using Scalar = T;
  using Bits = typename ExpConstants<T>::Bits;
  using UnsignedBits = std::make_unsigned_t<Bits>;
};

template <typename T>
struct Lanes<T, std::void_t<decltype(std::declval<T>()[0])>> {
  using Scalar = std::decay_t<decltype(std::declval<T>()[0])>;
  typedef typename ExpConstants<Scalar>::Bits Bits __attribute__((vector_size(sizeof(T))));
  typedef std::make_unsigned_t<typename ExpConstants<Scalar>::Bits> UnsignedBits
      __attribute__((vector_size(sizeof(T))));
};

// T's bits as unsigned integers of the same width, and back.
template <typename T>
inline typename Lanes<T>::UnsignedBits bits_of(T x) {
  typename Lanes<T>::UnsignedBits bits;
  __builtin_memcpy(&bits, &x, sizeof(T));
  return bits;
}

template <typename T>
inline T from_bits(typename Lanes<T>::UnsignedBits bits) {
  T x;
  __builtin_memcpy(&x, &bits, sizeof(T));
  return x;
}

template <typename T>
struct Reduced {
  T r;      // x - n·ln2, |r| <= ln2/2
  T scale;  // 2^n
};

// x outside [min_arg, max_arg] gives a meaningless result (a NaN gives NaN): fast_exp and
// fast_tanh replace those lanes with their limits by one select at the end, computed beside the
// arithmetic. Clamping x first instead put two compare-and-selects (~14 cycles) on the path every
// call waits on, and the online step waits on each of its sigmoids (dependent sigmoids: 83 -> 58
// cycles). 2^n is 0 for n <= -bias (the biased exponent is kept at 0 or above, beside the
// arithmetic): from a little below min_arg down to -flushed_from, exp(x) is 0 with no select,
// which fast_sigmoid relies on.
template <typename T>
inline Reduced<T> reduce(T x) {
  using S = typename Lanes<T>::Scalar;
  using C = ExpConstants<S>;
  using Bits = typename Lanes<T>::Bits;
  const T shifted = x * S(1.4426950408889634) + C::shifter;  // n + shifter, rounded to nearest
  const T n = shifted - C::shifter;
  // Unsigned arithmetic: defined for every n, including those of x out of range.
  const auto biased = bits_of(shifted) - bits_of(S(C::shifter)) + C::exponent_bias;
  const Bits signed_biased = (Bits)biased;
  const auto at_least_0 = (decltype(biased))(signed_biased > 0 ? signed_biased : Bits{});
  Reduced<T> out;
  out.r = (x - n * C::ln2_hi) - n * C::ln2_lo;
  out.scale = from_bits<T>(at_least_0 << C::mantissa_bits);
  return out;
}

// exp(x) from y, its value in range: 0 below min_arg, +inf above max_arg, y between them (and for
// a NaN). A vector takes one select on the path from y, the limit being chosen beside it;
// scalars take nested selects (a mask `or` of two bools GCC's vectoriser does not if-convert).
template <typename T>
inline T exp_within_range(T x, T y) {
  using S = typename Lanes<T>::Scalar;
  using C = ExpConstants<S>;
  constexpr S above = std::numeric_limits<S>::infinity();
  if constexpr (std::is_same_v<T, S>) {
    return x < C::min_arg ? S(0) : x > C::max_arg ? above : y;
  } else {
    const T limit = x > C::max_arg ? above : S(0);
    return ((x < C::min_arg) | (x > C::max_arg)) ? limit : y;
  }
}

// x with its sign bit taken from `sign`. A compare and a select cost ~7 cycles on the path of a
// lone exp where these bit operations cost one or two; scalars take std::copysign, which GCC
// keeps in vector registers.
template <typename T>
inline T copy_sign(T x, T sign) {
  using S = typename Lanes<T>::Scalar;
  if constexpr (std::is_same_v<T, S>) {
    return std::copysign(x, sign);
  } else {
    const auto sign_bit = bits_of(S(-0.0));
    return from_bits<T>((bits_of(x) & ~sign_bit) | (bits_of(sign) & sign_bit));
  }
}

// expm1(r) = r + Σ c_k r^k (k >= 2) by Estrin's scheme: pairs (c_k + c_k+1·r), then pairs of
// pairs with r², then with r⁴, ... A lone exp waits on this chain, and the sigmoids of an online
// step follow one another: the float polynomial (degree 7) takes three dependent multiply-adds
// after r where Horner's rule in r² took four, and the double one (degree 13) four where it took
// seven. (Written out: a loop over an array of partial sums kept GCC from vectorising the
// scalar activation loops.)
template <typename T>
inline T expm1_reduced(T r) {
  using C = ExpConstants<typename Lanes<T>::Scalar>;
  auto pair = [r](int k) {  // c_k + c_k+1·r; C's coefficients run from r^(degree+1) down to r²
    return C::coefficients[C::degree + 1 - k] + C::coefficients[C::degree - k] * r;
  };
  const T r2 = r * r, r4 = r2 * r2;
  if constexpr (C::degree == 6) {
    return (r + r2 * pair(2)) + r4 * (pair(4) + r2 * pair(6));
  } else {
    static_assert(C::degree == 12, "Estrin's tree written for degrees 7 and 13");
    const T r8 = r4 * r4;
    return ((r + r2 * pair(2)) + r4 * (pair(4) + r2 * pair(6))) +
           r8 * ((pair(8) + r2 * pair(10)) + r4 * pair(12));
  }
}

}  // namespace detail

template <typename T>
inline T fast_exp(T x) {
  const auto red = detail::reduce(x);
  return detail::exp_within_range(x, red.scale + red.scale * detail::expm1_reduced(red.r));
}

// σ(z) = 1/(1+e) or e/(1+e) with e = exp(-|z|) <= 1: no overflow, full relative accuracy.
// The online step waits on its sigmoids, so nothing between exp's polynomial m = expm1(r) and the
// division is a select (3 cycles each, and the numerator had two):
// - |z| is capped at flushed_from, so that 2^n, and with it e, is 0 beyond: σ is 0 or 1 there, as
//   for every |z| past ~88 (float). A NaN fails the compare and is capped too; it comes back as
//   the bits of its lanes in 1 + e are all set. The cap is a compare and select of floats, whose
//   negation GCC folds into reduce's constants; as an integer min on the bits (and an or for the
//   sign) it moved the value to the integer units and back, and the online step of the 2-3-1
//   network ran 3% slower in order (6 of 6 paired rounds, Zen 2; shuffled 0.4%, 4 of 4).
// - 1 + e = (1 + 2^n) + 2^n·m, one multiply-add from m (1 + 2^n is exact wherever 2^n still
//   changes 1 + e), and the numerator another, 0·m + 1 or 2^n·m + 2^n (= e), its factors chosen
//   beside the chain.
// A chain of dependent float sigmoids (AVX2), with the cap then an integer min: 15.1 -> 14.1 ns
// each; double's 16.9 -> 18.1 ns. Maximum error: float 2.09 ulp, double 1.82 (tests/test_exp.py).
template <typename T>
inline T fast_sigmoid(T z) {
  using S = typename detail::Lanes<T>::Scalar;
  using Bits = typename detail::Lanes<T>::Bits;  // signed: a magnitude's bits are below 2^(w-1)
  using UnsignedBits = typename detail::Lanes<T>::UnsignedBits;
  using Word = typename ExpConstants<S>::Bits;
  const auto sign_bit = detail::bits_of(S(-0.0));
  const Bits magnitude = (Bits)(detail::bits_of(z) & ~sign_bit);
  const Word infinity = Word(detail::bits_of(std::numeric_limits<S>::infinity()));
  const UnsignedBits nan = (UnsignedBits)(magnitude > infinity ? ~Bits{} : Bits{});
  const T absolute = detail::from_bits<T>((UnsignedBits)magnitude);
  const T capped = absolute < ExpConstants<S>::flushed_from ? absolute
                                                           : S(ExpConstants<S>::flushed_from);
  const auto red = detail::reduce(-capped);  // -min(|z|, cap)
  const T m = detail::expm1_reduced(red.r);
  const auto positive = z >= S(0);
  const T numerator = (positive ? S(0) : red.scale) * m + (positive ? S(1) : red.scale);
  const T one_plus_e = (S(1) + red.scale) + red.scale * m;
  return numerator / detail::from_bits<T>(detail::bits_of(one_plus_e) | nan);
}

// tanh|z| = -t/(2+t) with t = expm1(-2|z|) = 2^n expm1(r) + (2^n - 1): accurate near 0 (no 1 - e
// cancellation), exactly ±1 for large |z|, and ±0 for ±0 (t = 0 and y = -0 there: the sign is
// z's, whatever y's). Saturated lanes are set after the division, not before: a select on t let
// GCC's vectoriser split the division over the select's arms, and the loop ran two divisions.
template <typename T>
inline T fast_tanh(T z) {
  using S = typename detail::Lanes<T>::Scalar;
  const T x = S(-2) * detail::copy_sign(z, T{});  // -2|z|
  const auto red = detail::reduce(x);
  const T t = red.scale * detail::expm1_reduced(red.r) + (red.scale - S(1));
  const T y = -t / (S(2) + t);
  return detail::copy_sign(x < ExpConstants<S>::min_arg ? S(1) : y, z);
}

}  // namespace deltaprop
