// The divergence guard of a training step (network.hpp): a bound that proves an update finite,
// and the snapshot that undoes a step the bound could not vouch for.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "deltaprop/magnitude.hpp"
#include "deltaprop/network.hpp"

namespace deltaprop {

namespace {

// The largest magnitude in any of the buffers; NaN or infinity where one holds such a value.
template <typename T>
double largest_in(const std::vector<Buffer<T>>& buffers) {
  double m = 0;
  for (const auto& b : buffers) m = larger_magnitude(m, max_abs(b.data(), b.size()));
  return m;
}

// The largest gradient (and learning rate) a step may meet unguarded: sqrt(max)/16.
template <typename T>
double guard_limit() {
  return std::sqrt(double(std::numeric_limits<T>::max())) / 16;
}

// The largest change a step may make to a parameter unguarded: a quarter of max(T)'s ulp.
// Added to a finite parameter, a smaller change cannot round past max(T).
template <typename T>
double change_limit() {
  return double(std::numeric_limits<T>::max()) * double(std::numeric_limits<T>::epsilon()) / 8;
}

}  // namespace

// Whether a step with gradients at most `g` in magnitude, and weight decay's wd·w (which the
// optimizers add to the gradient), keeps everything finite. Within the limit, g² and the
// second moments stay finite. A parameter changes by lr·g (plain SGD), lr·m or lr·(g + μ·m)
// (momentum, Nesterov), or at most lr/(1 − β1)·m/ε (Adam: m/(√v̂ + ε) <= m/ε), with m the new
// first moment, at most `first_moments_after`: that change must stay below change_limit. Bounded
// by the gradient alone, as it once was, a first moment that earlier steps had built up (with a
// smaller rate, say) and Adam with a tiny ε could take a parameter past max(T) unguarded.
template <typename T>
bool Network<T>::step_is_safe(const OptimizerStep<T>& opt, double g) {
  const double limit = guard_limit<T>();
  g += decay_bound(opt);
  const double lr = opt.lr, decay = double(opt.lr) * double(opt.weight_decay);
  if (!(lr <= limit && decay <= 1 && g <= limit && lr * g <= limit)) return false;
  double change = lr * g;
  if (opt.kind == OptimizerKind::adam) {
    first_moments_after_ = std::max(first_moments_, g);  // β1·m + (1 − β1)·g
    change = lr / double(opt.one_minus_beta1) * first_moments_after_ / double(opt.eps);
  } else if (opt.momentum != T(0)) {
    first_moments_after_ = double(opt.momentum) * first_moments_ + g;
    change = lr * (g + first_moments_after_);
  } else {
    first_moments_after_ = first_moments_;
  }
  largest_move_ = change;
  return change <= change_limit<T>();
}

template <typename T>
bool Network<T>::check_moments() {
  // A first moment within the limit is as large as a gradient a guarded step may take; a second
  // moment, as its square.
  const double first = larger_magnitude(largest_in(m_weights), largest_in(m_biases));
  const double second = larger_magnitude(largest_in(v_weights), largest_in(v_biases));
  if (!std::isfinite(first) || !std::isfinite(second)) return false;
  const double limit = guard_limit<T>();
  first_moments_ = first;
  moments_unchecked = !(first <= limit && second <= limit * limit);
  return true;
}

template <typename T>
double Network<T>::decay_bound(const OptimizerStep<T>& opt) {
  if (opt.weight_decay == T(0)) return 0;
  const double wd = opt.weight_decay;
  // The carried bound grows by each step's largest move and rounding (network.hpp): in float32 it
  // gets here from ordinary weights after some 10^8 steps, then costs one scan.
  if (!(wd * weights_bound_ <= guard_limit<T>() / 4)) weights_bound_ = largest_in(weights);
  return wd * weights_bound_;
}

template <typename T>
bool Network<T>::update_is_safe(const double* largest, std::size_t rows,
                                const OptimizerStep<T>& opt) {
  double g = 0;
  for (std::size_t l = 1; l <= n_layers(); ++l) {
    const double a = largest[2 * (l - 1)], d = largest[2 * (l - 1) + 1];
    g = larger_magnitude(g, double(rows) * std::max(a, 1.0) * d);  // max(a, 1): the bias gradient
  }
  return step_is_safe(opt, g);
}

template <typename T>
bool Network<T>::gradients_are_safe(const std::vector<const T*>& dw, const std::vector<const T*>& db,
                                    const OptimizerStep<T>& opt) {
  double g = 0;
  for (std::size_t l = 0; l < n_layers(); ++l) {
    g = larger_magnitude(g, max_abs(dw[l], weights[l].size()));
    if (bias_) g = larger_magnitude(g, max_abs(db[l], biases[l].size()));
  }
  return step_is_safe(opt, g);
}

template <typename T>
void Network<T>::save_snapshot() {
  snapshot_.weights = weights;
  snapshot_.biases = biases;
  snapshot_.m_weights = m_weights;
  snapshot_.m_biases = m_biases;
  snapshot_.v_weights = v_weights;
  snapshot_.v_biases = v_biases;
  snapshot_.step = step;
  snapshot_.state_kind = state_kind;
}

template <typename T>
void Network<T>::restore_snapshot() {
  weights.swap(snapshot_.weights);
  biases.swap(snapshot_.biases);
  m_weights.swap(snapshot_.m_weights);
  m_biases.swap(snapshot_.m_biases);
  v_weights.swap(snapshot_.v_weights);
  v_biases.swap(snapshot_.v_biases);
  step = snapshot_.step;
  state_kind = snapshot_.state_kind;
  weights_changed();
}

template <typename T>
bool Network<T>::guard_before_update(const T* x, std::size_t rows, const OptimizerStep<T>& opt,
                                     double x_largest) {
  // The hidden layers' activations and deltas were measured by their GEMMs' epilogues.
  measure_ends(x, 0, rows, x_largest, step_magnitudes_.data());
  return guard_from_magnitudes(step_magnitudes_.data(), rows, opt);
}

template <typename T>
void Network<T>::measure_ends(const T* x, std::size_t row0, std::size_t rows, double x_largest,
                              double* largest) {
  const std::size_t n_in = sizes_[0], n_out = sizes_.back();
  largest[0] = x_largest >= 0 ? x_largest : max_abs(x + row0 * n_in, rows * n_in);
  largest[2 * n_layers() - 1] = max_abs(d_[n_layers()].data() + row0 * n_out, rows * n_out);
}

template <typename T>
bool Network<T>::guard_from_magnitudes(const double* largest, std::size_t rows,
                                       const OptimizerStep<T>& opt) {
  const bool careful = moments_unchecked || !update_is_safe(largest, rows, opt);
  if (careful) save_snapshot();
  return careful;
}

template <typename T>
bool Network<T>::check_careful_update() {
  // Each array scanned once: check_moments both finds the moments finite and measures them, for
  // a careful step may leave finite moments beyond the bounds (a first moment near the largest
  // value, from a huge but finite gradient), and steps then stay careful until they decay.
  // The weights' scan measures them for weight decay's bound, which a careful step's moves
  // (not bounded by step_is_safe) do not carry.
  const double w = largest_in(weights);
  if (std::isfinite(w) && std::isfinite(largest_in(biases)) && check_moments()) {
    weights_bound_ = w;
    return true;
  }
  restore_snapshot();
  return false;
}

// Every member defined here (network.hpp declares the class's instantiations extern).
#define DELTAPROP_GUARD(T)                                                                      \
  template bool Network<T>::step_is_safe(const OptimizerStep<T>&, double);                     \
  template bool Network<T>::check_moments();                                                   \
  template double Network<T>::decay_bound(const OptimizerStep<T>&);                            \
  template bool Network<T>::update_is_safe(const double*, std::size_t, const OptimizerStep<T>&); \
  template bool Network<T>::gradients_are_safe(const std::vector<const T*>&,                   \
                                               const std::vector<const T*>&,                   \
                                               const OptimizerStep<T>&);                       \
  template void Network<T>::save_snapshot();                                                   \
  template void Network<T>::restore_snapshot();                                                \
  template bool Network<T>::guard_before_update(const T*, std::size_t, const OptimizerStep<T>&, \
                                                double);                                       \
  template void Network<T>::measure_ends(const T*, std::size_t, std::size_t, double, double*); \
  template bool Network<T>::guard_from_magnitudes(const double*, std::size_t,                  \
                                                  const OptimizerStep<T>&);                    \
  template bool Network<T>::check_careful_update();
DELTAPROP_GUARD(float)
DELTAPROP_GUARD(double)
#undef DELTAPROP_GUARD

}  // namespace deltaprop
