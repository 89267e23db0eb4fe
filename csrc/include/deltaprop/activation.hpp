// Activations g and their derivatives g' written in terms of the layer's OUTPUT a = g(z), so the
// backward pass never needs Z (DESIGN §1). Each function runs one row segment with the
// activation switch hoisted out of the loop.
#pragma once

#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>

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

// y[j] = g(x[j] + bias[j]) for an elementwise g (bias may be null). Softmax is row-wise and
// handled by softmax_row.
template <typename T>
inline void activate_row(Activation act, T alpha, const T* x, const T* bias, T* y, std::size_t n) {
  auto biased = [&](std::size_t j) { return bias ? x[j] + bias[j] : x[j]; };
  switch (act) {
    case Activation::identity:
    case Activation::softmax:  // pre-activation; the caller applies softmax_row
      for (std::size_t j = 0; j < n; ++j) y[j] = biased(j);
      return;
    case Activation::sigmoid:
      for (std::size_t j = 0; j < n; ++j) y[j] = fast_sigmoid(biased(j));
      return;
    case Activation::tanh:
      for (std::size_t j = 0; j < n; ++j) y[j] = fast_tanh(biased(j));
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
