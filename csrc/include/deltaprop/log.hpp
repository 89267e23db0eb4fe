// log1p written to vectorise, for the cross-entropy loss: log Σ exp(z − max z) = log1p(rest).
//
// Like exp.hpp: straight-line arithmetic with selects and no libm call, taking a double or a GCC
// vector of doubles. The output pass computes eight rows' losses in one vector, where a libm call
// per row was half of its time.
//
// Method (fdlibm's log1p and log): u = 1 + x rounded, and its rounding error carried as
// log1p(x) = log(u) + c with c = (x − (u − 1)) / u. Then u = 2^k·f with f in [√2/2, √2), and
// log(f) = 2 atanh(s) = (f − 1) − h + s(h + R) with s = (f − 1)/(f + 1), h = (f − 1)²/2 and R
// fdlibm's minimax polynomial in s². Within 1 ulp of NumPy's log1p from 0 to 1e300; the tests
// check the cross-entropy losses it gives. +inf and NaN pass through. Defined for x >= 0 only:
// rest is a sum of exponentials.
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>

#include "deltaprop/exp.hpp"

namespace deltaprop {

template <typename T>
inline T fast_log1p(T x) {
  using Bits = typename detail::Lanes<T>::Bits;
  static_assert(std::is_same_v<typename detail::Lanes<T>::Scalar, double>, "double lanes only");
  constexpr double lg1 = 6.666666666666735130e-01, lg2 = 3.999999999940941908e-01,
                   lg3 = 2.857142874366239149e-01, lg4 = 2.222219843214978396e-01,
                   lg5 = 1.818357216161805012e-01, lg6 = 1.531383769920937332e-01,
                   lg7 = 1.479819860511658591e-01;
  constexpr double ln2_hi = ExpConstants<double>::ln2_hi, ln2_lo = ExpConstants<double>::ln2_lo;
  constexpr std::int64_t one = 0x3ff0000000000000, half_sqrt2 = 0x3fe6a09e667f3bcd;
  constexpr std::int64_t mantissa = 0x000fffffffffffff;
  const T u = 1.0 + x;
  const T c = (x - (u - 1.0)) / u;
  // Adding 1 − √2/2 to u's bits carries into the exponent exactly when u's mantissa is at
  // least √2: k is then the exponent of u/√2 rounded, and f = u / 2^k.
  Bits bits;
  __builtin_memcpy(&bits, &u, sizeof u);
  const Bits shifted = bits + (one - half_sqrt2);
  const Bits k = (shifted >> 52) - 1023;
  const Bits f_bits = (shifted & mantissa) + half_sqrt2;
  T f, kd;
  __builtin_memcpy(&f, &f_bits, sizeof f);
  if constexpr (sizeof(T) == sizeof(double))
    kd = static_cast<double>(k);
  else
    kd = __builtin_convertvector(k, T);
  const T f1 = f - 1.0, s = f1 / (2.0 + f1), z = s * s, w = z * z;
  const T r = z * (lg1 + w * (lg3 + w * (lg5 + w * lg7))) + w * (lg2 + w * (lg4 + w * lg6));
  const T hfsq = 0.5 * f1 * f1;
  const T y = kd * ln2_hi - ((hfsq - (s * (hfsq + r) + (kd * ln2_lo + c))) - f1);
  return x < std::numeric_limits<double>::infinity() ? y : x;
}

}  // namespace deltaprop
