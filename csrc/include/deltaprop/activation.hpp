// Activations g and their derivatives g' written in terms of the layer's OUTPUT a = g(z), so the
// backward pass never needs Z (DESIGN §1). Each function runs a block of rows with the
// activation switch hoisted out of its loops.
#pragma once

#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>

#include "deltaprop/elementwise.hpp"
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

// y[j] = f(x[j] + bias[j]) (bias may be null) with f taking a T or a GCC vector of T.
// exp's selects are what GCC's vectoriser if-converts only where AVX-512 gives it masks: as
// scalar loops, sigmoid and tanh stayed scalar on AVX2 and baseline x86-64, and in double
// everywhere (AVX2, 256×1024 floats: sigmoid 1290 -> 115 µs).
template <std::size_t vector_bytes = 0, typename T, typename F>
inline void map_row(const T* x, const T* bias, T* y, std::size_t n, const F& f) {
  if (bias)  // not + 0 where there is none: -0 + 0 is +0, and tanh(-0) is -0
    zip_row<vector_bytes>(x, bias, y, n, [&](auto z, auto b) { return f(z + b); });
  else
    zip_row<vector_bytes>(x, x, y, n, [&](auto z, auto) { return f(z); });
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

// y[j] = g(x[j] + bias[j]) for an elementwise g (bias may be null) over rows×n elements: row r
// of x at r·ldx, of y at r·ldy (x may be y). Softmax is row-wise and handled by softmax_row.
// The switch runs once for the block: the GEMM epilogue activates tiles of up to 16-wide rows,
// and a switch per row cost it nearly as much as the arithmetic. `vector_bytes` as for zip_row.
template <std::size_t vector_bytes = 0, typename T>
inline void activate_rows(Activation act, T alpha, const T* x, std::ptrdiff_t ldx, const T* bias,
                          T* y, std::ptrdiff_t ldy, std::ptrdiff_t rows, std::size_t n) {
  auto each_row_maps = [&](auto f) {
    for (std::ptrdiff_t r = 0; r < rows; ++r)
      map_row<vector_bytes>(x + r * ldx, bias, y + r * ldy, n, f);
  };
  switch (act) {
    case Activation::identity:
    case Activation::softmax:  // pre-activation; the caller applies softmax_row
      if (!bias) {
        if (x != y)
          for (std::ptrdiff_t r = 0; r < rows; ++r) copy_row(x + r * ldx, y + r * ldy, n);
        return;
      }
      each_row_maps([](auto z) { return z; });
      return;
    case Activation::sigmoid:
      each_row_maps([](auto z) { return fast_sigmoid(z); });
      return;
    case Activation::tanh:
      each_row_maps([](auto z) { return fast_tanh(z); });
      return;
    case Activation::relu:
      each_row_maps([](auto z) { return where_positive(z, z, decltype(z){}); });
      return;
    case Activation::leaky_relu:
      each_row_maps([alpha](auto z) { return where_positive(z, z, alpha * z); });
      return;
  }
}

template <typename T>
inline void activate_row(Activation act, T alpha, const T* x, const T* bias, T* y, std::size_t n) {
  activate_rows(act, alpha, x, 0, bias, y, 0, 1, n);
}

// y[j] = x[j] · g'(a[j]), g' from the output a, over rows×n elements: row r of x, a and y at
// r·ldx, r·lda and r·ldy (x may be y). `vector_bytes` as for zip_row.
template <std::size_t vector_bytes = 0, typename T>
inline void multiply_derivative_rows(Activation act, T alpha, const T* x, std::ptrdiff_t ldx,
                                     const T* a, std::ptrdiff_t lda, T* y, std::ptrdiff_t ldy,
                                     std::ptrdiff_t rows, std::size_t n) {
  auto each_row_zips = [&](auto f) {
    for (std::ptrdiff_t r = 0; r < rows; ++r)
      zip_row<vector_bytes>(x + r * ldx, a + r * lda, y + r * ldy, n, f);
  };
  switch (act) {
    case Activation::identity:
      each_row_zips([](auto xj, auto) { return xj; });
      return;
    case Activation::sigmoid:
      each_row_zips([](auto xj, auto aj) { return xj * (aj * (T(1) - aj)); });
      return;
    case Activation::tanh:
      each_row_zips([](auto xj, auto aj) { return xj * (T(1) - aj * aj); });
      return;
    case Activation::relu:
      each_row_zips([](auto xj, auto aj) { return where_positive(aj, xj, decltype(xj){}); });
      return;
    case Activation::leaky_relu:
      each_row_zips([alpha](auto xj, auto aj) { return where_positive(aj, xj, alpha * xj); });
      return;
    case Activation::softmax:
      throw std::invalid_argument("softmax has no elementwise derivative; use it as the output "
                                  "of a cross_entropy network");
  }
}

template <typename T>
inline void multiply_derivative_row(Activation act, T alpha, const T* x, const T* a, T* y,
                                    std::size_t n) {
  multiply_derivative_rows(act, alpha, x, 0, a, 0, y, 0, 1, n);
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
