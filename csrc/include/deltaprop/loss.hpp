// The output layer: activation, loss and output delta fused in one pass over Z_L (DESIGN §1).
// Losses are computed from Z in their stable forms (log-sum-exp, softplus), so they stay finite
// for any finite logits; the returned sum is accumulated in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>

#include "deltaprop/activation.hpp"
#include "deltaprop/log.hpp"

namespace deltaprop {

enum class Loss : int { mse, cross_entropy, binary_cross_entropy };

inline Loss loss_from_name(const std::string& name) {
  if (name == "mse") return Loss::mse;
  if (name == "cross_entropy") return Loss::cross_entropy;
  if (name == "binary_cross_entropy") return Loss::binary_cross_entropy;
  throw std::invalid_argument("unknown loss '" + name +
                              "'; expected one of mse, cross_entropy, binary_cross_entropy");
}

// One row: z holds Z_L on entry and A_L = g(Z_L) on exit. When t is non-null the row's loss is
// returned, and when d is also non-null d = ∂E/∂Z_L for this row, scaled by `scale` (1/B).
template <typename T>
inline double output_row(Loss loss, Activation act, T alpha, T* z, const T* t, T* d,
                         std::size_t n, T scale) {
  double e = 0.0;
  switch (loss) {
    case Loss::mse:
      activate_row(act, alpha, z, static_cast<const T*>(nullptr), z, n);
      if (!t) return 0.0;
      for (std::size_t j = 0; j < n; ++j) {
        const double r = double(z[j]) - double(t[j]);
        e += 0.5 * r * r;
      }
      if (d) {
        for (std::size_t j = 0; j < n; ++j) d[j] = (z[j] - t[j]) * scale;
        multiply_derivative_row(act, alpha, d, z, d, n);
      }
      return e;
    case Loss::cross_entropy: {
      // -Σ t log softmax(z) = Σ t (m − z) + (Σ t) log Σ exp(z − m), m = max z. The exponentials
      // are softmax's own (vectorised, in T; a second set in double through libm was 6% of a
      // digits-shaped step), and Σ exp(z − m) = 1 + rest, with rest summed apart from the top
      // logit's exp(0) = 1, so log1p keeps a confident row's small loss to relative precision.
      // log1p is log.hpp's, as in output.cpp's lanes.
      std::size_t top = 0;
      for (std::size_t j = 1; j < n; ++j) top = z[j] > z[top] ? j : top;
      const T m = z[top];
      double mass = 0.0;
      if (t)
        for (std::size_t j = 0; j < n; ++j) {
          e += double(t[j]) * double(m - z[j]);
          mass += double(t[j]);
        }
      for (std::size_t j = 0; j < n; ++j) z[j] = fast_exp(z[j] - m);
      double rest = 0.0;
      for (std::size_t j = 0; j < n; ++j) rest += j == top ? 0.0 : double(z[j]);
      e += mass * fast_log1p(rest);
      const T inv = T(1) / T(1.0 + rest);
      for (std::size_t j = 0; j < n; ++j) z[j] *= inv;
      break;
    }
    case Loss::binary_cross_entropy:
      // -[t log σ(z) + (1-t) log(1-σ(z))] = max(z,0) - t z + log(1 + exp(-|z|))
      for (std::size_t j = 0; j < n; ++j) {
        const double zj = z[j];
        if (t) e += std::max(zj, 0.0) - double(t[j]) * zj + std::log1p(std::exp(-std::fabs(zj)));
        z[j] = fast_sigmoid(z[j]);
      }
      break;
  }
  if (t && d)
    for (std::size_t j = 0; j < n; ++j) d[j] = (z[j] - t[j]) * scale;
  return e;
}

// output_row on each of `rows` rows n wide, through the copy for the ISA in use (output.cpp);
// returns the sum of the rows' losses.
template <typename T>
double output_rows(Loss loss, Activation act, T alpha, T* z, const T* t, T* d, std::size_t rows,
                   std::size_t n, T scale);

}  // namespace deltaprop
