// The online training step (batch size 1, the reference posts' setting): matrix-vector loops
// with no GEMM machinery, packing or parallel region, so tiny networks train at millions of
// samples per second.
//
// Backward is two passes over the weights: every D_{l-1}[i] = W_l[i,:]·D_l from the old rows,
// then each row updated in place with the gradient A_{l-1}[i] · D_l. Fusing them (one pass)
// would update W_L before D_1 is known, and the divergence guard must see all deltas first.
#include <cmath>
#include <limits>
#include <type_traits>

#include "deltaprop/magnitude.hpp"
#include "deltaprop/network.hpp"
#include "gemm/transpose.hpp"
#include "per_isa.hpp"

namespace deltaprop {

namespace {

// Σ x[j] y[j] with eight partial sums in a fixed pattern: vectorisable and reproducible.
template <typename T>
T dot(const T* x, const T* y, std::size_t n) {
  T partial[8] = {};
  std::size_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int u = 0; u < 8; ++u) partial[u] += x[j + u] * y[j + u];
  T sum = 0;
  for (; j < n; ++j) sum += x[j] * y[j];
  for (int u = 0; u < 8; ++u) sum += partial[u];
  return sum;
}

// out[r] = dot(w + r·ld, y, n) for r < 8: the same partial sums in the same order, but the eight
// rows' partials are added up together, lane r of one vector per partial (an 8×8 transpose),
// where dot() reduces each row's alone: for rows 64 wide that took as many instructions as
// the multiply-adds. Floats only: eight rows of eight double partials are sixteen AVX2
// registers, and the spills cost a double-precision 64-128-64-10 fit 17% more instructions.
template <typename T>
void dot_rows8(const T* w, std::size_t ld, const T* y, std::size_t n, T* out) {
  typedef T V __attribute__((vector_size(8 * sizeof(T))));
  V partial[8] = {};  // partial[r]: row r's eight partial sums
  std::size_t j = 0;
  for (; j + 8 <= n; j += 8) {
    V y8;
    __builtin_memcpy(&y8, y + j, sizeof y8);
    for (int r = 0; r < 8; ++r) {
      V w8;
      __builtin_memcpy(&w8, w + r * ld + j, sizeof w8);
      partial[r] += w8 * y8;
    }
  }
  V sum{};  // lane r: row r's sum, its remainder first, as dot() adds them
  for (; j < n; ++j) {
    V column;
    for (int r = 0; r < 8; ++r) column[r] = w[r * ld + j];
    sum += column * y[j];
  }
  V by_partial[8];  // lane r of by_partial[u]: partial[r][u]
  detail::transpose8x8(partial, by_partial);
  for (int u = 0; u < 8; ++u) sum += by_partial[u];
  __builtin_memcpy(out, &sum, sizeof sum);
}

// W −= lr·(a dᵀ + wd·W) for an n_in×n_out W: plain SGD's update of a layer, row by row. Inputs,
// activations and deltas are never the weights; told so (`restrict`), the compiler no longer
// tests each row against the deltas for overlap before its vector loop.
template <typename T>
void sgd_layer_update(T* __restrict w, const T* __restrict a, const T* __restrict d,
                      std::size_t n_in, std::size_t n_out, T lr, T wd) {
  for (std::size_t i = 0; i < n_in; ++i) {
    T* __restrict row = w + i * n_out;
    const T ai = a[i];
    for (std::size_t j = 0; j < n_out; ++j) row[j] -= lr * (ai * d[j] + wd * row[j]);
  }
}

}  // namespace

template <typename T>
double Network<T>::online_step_body(const T* x, const T* t, OptimizerStep<T> opt) {
  const std::size_t L = n_layers();
  const T* in = x;
  for (std::size_t l = 1; l <= L; ++l) {  // A_l = g(A_{l-1} W_l + b_l), as axpys over rows of W_l
    const std::size_t n_in = sizes_[l - 1], n_out = sizes_[l];
    const T* w = weights[l - 1].data();
    T* out = a_[l].data();
    for (std::size_t j = 0; j < n_out; ++j) out[j] = bias_ ? biases[l - 1][j] : T(0);
    // Four rows of W per sweep over `out`, added in row order: the same sums as one row at a
    // time, with a quarter of the loads and stores of `out`.
    std::size_t i = 0;
    for (; i + 4 <= n_in; i += 4) {
      const T a0 = in[i], a1 = in[i + 1], a2 = in[i + 2], a3 = in[i + 3];
      const T *w0 = w + i * n_out, *w1 = w0 + n_out, *w2 = w1 + n_out, *w3 = w2 + n_out;
      for (std::size_t j = 0; j < n_out; ++j)
        out[j] = out[j] + a0 * w0[j] + a1 * w1[j] + a2 * w2[j] + a3 * w3[j];
    }
    for (; i < n_in; ++i) {
      const T ai = in[i];
      const T* w_row = w + i * n_out;
      for (std::size_t j = 0; j < n_out; ++j) out[j] += ai * w_row[j];
    }
    if (l < L) activate_row(activations_[l - 1], alpha_, out, static_cast<const T*>(nullptr), out, n_out);
    in = out;
  }
  const double loss =
      output_row(loss_, activations_.back(), alpha_, a_[L].data(), t, d_[L].data(), sizes_[L], T(1));
  if (!std::isfinite(loss)) return loss;

  // All deltas first, with the old weights: the divergence guard needs them before any update.
  for (std::size_t l = L; l >= 2; --l) {
    const std::size_t n_in = sizes_[l - 1], n_out = sizes_[l];
    const T* w = weights[l - 1].data();
    const T* d = d_[l].data();
    T* d_prev = d_[l - 1].data();
    std::size_t i = 0;
    if constexpr (std::is_same_v<T, float>)
      for (; i + 8 <= n_in; i += 8) dot_rows8(w + i * n_out, n_out, d, n_out, d_prev + i);
    for (; i < n_in; ++i) d_prev[i] = dot(w + i * n_out, d, n_out);
    multiply_derivative_row(activations_[l - 2], alpha_, d_prev, a_[l - 1].data(), d_prev, n_in);
  }
  // The guard's magnitudes, scanned inline: a call per layer for a few elements each cost more
  // than the scans (the 2-3-1 network trains 4% faster).
  double* largest = step_magnitudes_.data();
  for (std::size_t l = 1; l <= L; ++l) {
    largest[2 * (l - 1)] = max_abs_inline(l == 1 ? x : a_[l - 1].data(), sizes_[l - 1]);
    largest[2 * (l - 1) + 1] = max_abs_inline(d_[l].data(), sizes_[l]);
  }
  const bool careful = guard_from_magnitudes(largest, 1, opt);

  begin_step(opt);
  const bool plain_sgd = opt.kind == OptimizerKind::sgd && opt.momentum == T(0);
  for (std::size_t l = L; l >= 1; --l) {
    const std::size_t n_in = sizes_[l - 1], n_out = sizes_[l];
    const T* a_prev = l == 1 ? x : a_[l - 1].data();
    const T* d = d_[l].data();
    T* w = weights[l - 1].data();
    if (plain_sgd) {
      sgd_layer_update(w, a_prev, d, n_in, n_out, opt.lr, opt.weight_decay);
    } else {
      T* row_gradient = reserve(row_gradient_, n_out);
      for (std::size_t i = 0; i < n_in; ++i) {
        const T ai = a_prev[i];
        for (std::size_t j = 0; j < n_out; ++j) row_gradient[j] = ai * d[j];
        const std::size_t at = i * n_out;
        apply_update(opt, w + at, row_gradient, m_weights.empty() ? nullptr : m_weights[l - 1].data() + at,
                     v_weights.empty() ? nullptr : v_weights[l - 1].data() + at, n_out, true);
      }
    }
    if (bias_)
      apply_update(opt, biases[l - 1].data(), d, m_biases.empty() ? nullptr : m_biases[l - 1].data(),
                   v_biases.empty() ? nullptr : v_biases[l - 1].data(), n_out, false);
  }
  if (!guard_after_update(careful)) return std::numeric_limits<double>::quiet_NaN();
  return loss;
}

template <typename T>
double Network<T>::online_step(const T* x, const T* t, const OptimizerStep<T>& opt) {
  return for_isa<&Network<T>::online_step_body>(*this, x, t, opt);
}

template double Network<float>::online_step_body(const float*, const float*, OptimizerStep<float>);
template double Network<double>::online_step_body(const double*, const double*, OptimizerStep<double>);
template double Network<float>::online_step(const float*, const float*, const OptimizerStep<float>&);
template double Network<double>::online_step(const double*, const double*, const OptimizerStep<double>&);

}  // namespace deltaprop
