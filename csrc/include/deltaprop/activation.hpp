// Activations g and their derivatives g' written in terms of the layer's OUTPUT a = g(z), so the
// backward pass never needs Z (DESIGN §1). Each function runs one row segment with the
// activation switch hoisted out of the loop.
#pragma once

#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>

#include "deltaprop/dispatch.hpp"
#include "deltaprop/exp.hpp"

namespace deltaprop {

enum class Activation : int { identity, sigmoid, tanh, relu, leaky_relu, softmax };

inline Activation activation_from_name(const std::string& name) {
  if (name == "identity") return Activation::identity;
  if (name == "sigmoid") return Activation::sigmoid;
  if (name == "tanh") return Activation::tanh;
  if (name == "relu") return Activation::relu;
  if (name == "leaky_relu") return Activation::leaky_relu;
  if (name == "softmax") return Activation::softmax;
  throw std::invalid_argument("unknown activation '" + name +
                              "'; expected one of identity, sigmoid, tanh, relu, leaky_relu, softmax");
}

// y[j] = f(x[j] + bias[j]) with f taking a scalar or a GCC vector of T: whole vectors of `bytes`,
// then the remaining elements one by one.
template <std::size_t bytes, typename T, typename F>
inline void map_vectors(const T* x, const T* bias, T* y, std::size_t n, const F& f) {
  typedef T V __attribute__((vector_size(bytes)));
  constexpr std::size_t lanes = bytes / sizeof(T);
  std::size_t j = 0;
  for (; j + lanes <= n; j += lanes) {
    V v;
    __builtin_memcpy(&v, x + j, sizeof v);
    if (bias) {  // not + 0 where there is none: -0 + 0 is +0, and tanh(-0) is -0
      V b;
      __builtin_memcpy(&b, bias + j, sizeof b);
      v += b;
    }
    v = f(v);
    __builtin_memcpy(y + j, &v, sizeof v);
  }
  for (; j < n; ++j) y[j] = f(bias ? x[j] + bias[j] : x[j]);
}

// map_vectors in the ISA's register width. exp's selects are what GCC's vectoriser if-converts
// only where AVX-512 gives it masks: as scalar loops, sigmoid and tanh stayed scalar on AVX2 and
// baseline x86-64, and in double everywhere (AVX2, 256×1024 floats: sigmoid 1290 -> 115 µs).
// Vectors wider than the registers are no remedy: GCC split their compares and selects into
// lanes.
template <typename T, typename F>
inline void map_row(const T* x, const T* bias, T* y, std::size_t n, const F& f) {
  if (current_isa() == Isa::avx512)
    map_vectors<64>(x, bias, y, n, f);
  else
    map_vectors<32>(x, bias, y, n, f);
}

// y = x for distinct rows, in moves of a size known at compile time: 32 bytes, the last one
// overlapping the one before, or for a shorter row two halving moves that overlap. A plain loop
// became a memcpy call, which for a row of an epilogue's edge tile (10 floats) cost more than
// the copy; without `restrict`, a known short width was copied element by element, as each
// store might have changed x.
template <typename T>
inline void copy_row(const T* __restrict x, T* __restrict y, std::size_t n) {
  constexpr std::size_t chunk = 32 / sizeof(T);
  if (n >= chunk) {
    for (std::size_t j = 0; j + chunk < n; j += chunk) __builtin_memcpy(y + j, x + j, 32);
    __builtin_memcpy(y + n - chunk, x + n - chunk, 32);
    return;
  }
#pragma GCC unroll 4
  for (std::size_t width = chunk / 2; width > 0; width /= 2)
    if (n >= width) {
      __builtin_memcpy(y, x, width * sizeof(T));
      __builtin_memcpy(y + n - width, x + n - width, width * sizeof(T));
      return;
    }
}

// y[j] = g(x[j] + bias[j]) for an elementwise g (bias may be null). Softmax is row-wise and
// handled by softmax_row.
template <typename T>
inline void activate_row(Activation act, T alpha, const T* x, const T* bias, T* y, std::size_t n) {
  auto biased = [&](std::size_t j) { return bias ? x[j] + bias[j] : x[j]; };
  switch (act) {
    case Activation::identity:
    case Activation::softmax:  // pre-activation; the caller applies softmax_row
      if (!bias) {
        if (x != y) copy_row(x, y, n);
        return;
      }
      for (std::size_t j = 0; j < n; ++j) y[j] = biased(j);
      return;
    case Activation::sigmoid:
      map_row(x, bias, y, n, [](auto z) { return fast_sigmoid(z); });
      return;
    case Activation::tanh:
      map_row(x, bias, y, n, [](auto z) { return fast_tanh(z); });
      return;
    case Activation::relu:
      for (std::size_t j = 0; j < n; ++j) {
        const T z = biased(j);
        y[j] = z > T(0) ? z : T(0);
      }
      return;
    case Activation::leaky_relu:
      for (std::size_t j = 0; j < n; ++j) {
        const T z = biased(j);
        y[j] = z > T(0) ? z : alpha * z;
      }
      return;
  }
}

// y[j] = x[j] · g'(a[j]), g' from the output a. Every x[j] is read whatever a[j] is: a read
// under a condition is no select, and without masked loads (AVX2, the baseline) GCC compiled a
// fully unrolled row of ReLU deltas to a compare and branch per element.
template <typename T>
inline void multiply_derivative_row(Activation act, T alpha, const T* x, const T* a, T* y,
                                    std::size_t n) {
  switch (act) {
    case Activation::identity:
      for (std::size_t j = 0; j < n; ++j) y[j] = x[j];
      return;
    case Activation::sigmoid:
      for (std::size_t j = 0; j < n; ++j) y[j] = x[j] * (a[j] * (T(1) - a[j]));
      return;
    case Activation::tanh:
      for (std::size_t j = 0; j < n; ++j) y[j] = x[j] * (T(1) - a[j] * a[j]);
      return;
    case Activation::relu:
      for (std::size_t j = 0; j < n; ++j) {
        const T xj = x[j];
        y[j] = a[j] > T(0) ? xj : T(0);
      }
      return;
    case Activation::leaky_relu:
      for (std::size_t j = 0; j < n; ++j) {
        const T xj = x[j];
        y[j] = a[j] > T(0) ? xj : alpha * xj;
      }
      return;
    case Activation::softmax:
      throw std::invalid_argument("softmax has no elementwise derivative; use it as the output "
                                  "of a cross_entropy network");
  }
}

// Numerically stable softmax of one row, in place: exp of (z - max) never overflows.
template <typename T>
inline void softmax_row(T* z, std::size_t n) {
  T m = z[0];
  for (std::size_t j = 1; j < n; ++j) m = z[j] > m ? z[j] : m;
  T s = 0;
  for (std::size_t j = 0; j < n; ++j) s += (z[j] = fast_exp(z[j] - m));
  const T inv = T(1) / s;
  for (std::size_t j = 0; j < n; ++j) z[j] *= inv;
}

}  // namespace deltaprop
