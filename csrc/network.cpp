// The layer loops and the training step of the native backend (the epoch loop: epoch.cpp; the
// divergence guard: divergence_guard.cpp).
//
// One step: forward (one GEMM per layer, bias + activation in its epilogue) -> output pass
// (activation, loss and D_L fused) -> for l = L..1: the delta GEMM D_{l-1} = (D_l W_lᵀ) ⊙ g'
// with the old W_l, then the gradient GEMM A_{l-1}ᵀ D_l whose epilogue updates W_l in place.
#include "deltaprop/network.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <limits>
#include <stdexcept>

#include "deltaprop/column_sums.hpp"
#include "deltaprop/dispatch.hpp"
#include "deltaprop/gemm.hpp"
#include "deltaprop/magnitude.hpp"
#include "deltaprop/threads.hpp"

namespace deltaprop {

template <typename T>
Network<T>::Network(std::vector<std::size_t> sizes, std::vector<Activation> activations,
                    Loss loss, T alpha, bool bias)
    : sizes_(std::move(sizes)), activations_(std::move(activations)), loss_(loss),
      alpha_(alpha), bias_(bias) {
  if (sizes_.size() < 2 || activations_.size() != sizes_.size() - 1)
    throw std::invalid_argument("a network needs at least two sizes and one activation per layer");
  for (std::size_t l = 0; l < n_layers(); ++l) {
    weights.emplace_back(sizes_[l] * sizes_[l + 1], T(0));
    if (bias_) biases.emplace_back(sizes_[l + 1], T(0));
  }
  a_.resize(n_layers() + 1);
  d_.resize(n_layers() + 1);
  grad_.resize(n_layers() + 1);
  step_magnitudes_.resize(2 * n_layers());
  share_magnitudes_.resize(4 * n_layers());
}

template <typename T>
void Network<T>::reset_optimizer() {
  m_weights.clear();
  m_biases.clear();
  v_weights.clear();
  v_biases.clear();
  step = 0;
  state_kind = -1;
  moments_unchecked = false;
  first_moments_ = 0;
}

template <typename T>
void Network<T>::begin_step(OptimizerStep<T>& opt) {
  if (state_kind != -1 && state_kind != static_cast<int>(opt.kind)) reset_optimizer();
  state_kind = static_cast<int>(opt.kind);
  auto zeros_like = [](const std::vector<Buffer<T>>& params, std::vector<Buffer<T>>& moments) {
    if (moments.size() == params.size()) return;
    moments.clear();
    for (const auto& p : params) moments.emplace_back(p.size(), T(0));
  };
  if (opt.uses_first_moment()) {
    zeros_like(weights, m_weights);
    zeros_like(biases, m_biases);
  }
  if (opt.uses_second_moment()) {
    zeros_like(weights, v_weights);
    zeros_like(biases, v_biases);
  }
  ++step;
  if (opt.kind == OptimizerKind::adam) {
    opt.step_size = static_cast<T>(double(opt.lr) / (1.0 - std::pow(opt.beta1_exact, double(step))));
    opt.inverse_root_correction2 =
        static_cast<T>(1.0 / std::sqrt(1.0 - std::pow(opt.beta2_exact, double(step))));
  }
}

template <typename T>
void Network<T>::reserve_rows(std::size_t rows) {
  if (rows <= capacity_) return;
  for (std::size_t l = 0; l <= n_layers(); ++l) {
    reserve(a_[l], rows * sizes_[l]);
    if (l > 0) reserve(d_[l], rows * sizes_[l]);
  }
  capacity_ = rows;
}

template <typename T>
void Network<T>::forward_pass(const T* x, std::size_t rows, bool measure,
                              std::vector<Buffer<T>>& a) {
  const T* in = x;
  for (std::size_t l = 1; l <= n_layers(); ++l) in = forward_layer(l, in, rows, measure, a);
}

template <typename T>
const T* Network<T>::forward_layer(std::size_t l, const T* in, std::size_t rows, bool measure,
                                   std::vector<Buffer<T>>& a) {
  const double largest = forward_product(l, in, rows, measure, a[l].data());
  if (l < n_layers() && measure) step_magnitudes_[2 * l] = largest;  // max|A_l|, for the guard
  return a[l].data();
}

template <typename T>
double Network<T>::forward_product(std::size_t l, const T* in, std::size_t rows, bool measure,
                                   T* out) {
  const bool hidden = l < n_layers();
  Epilogue<T> ep;
  ep.kind = EpilogueKind::bias_activation;
  // The output layer stops at Z_L: output_pass applies its activation together with the loss.
  ep.activation = hidden ? activations_[l - 1] : Activation::identity;
  ep.alpha = alpha_;
  ep.bias = bias_ ? biases[l - 1].data() : nullptr;
  ep.measure = hidden && measure ? Measure::output : Measure::nothing;
  const auto n_in = static_cast<std::ptrdiff_t>(sizes_[l - 1]);
  const auto n_out = static_cast<std::ptrdiff_t>(sizes_[l]);
  return gemm<T>(rows, n_out, n_in, row_major(in, n_in), row_major(weights[l - 1].data(), n_out),
                 out, n_out, ep);
}

template <typename T>
template <typename Phase>
void Network<T>::beside_next_batch(NextBatch<T>* next, double work, const Phase& phase) {
  // Alone: no rows left to copy, a phase that runs on threads itself, or no thread to spare
  // (two available now; none while a stall's back-off lasts). Tested in that order, as every
  // layer of every step asks, and most have no rows to copy.
  if (!next || next->copied == next->batch.rows || threads_for(work) > 1 ||
      threads_for(std::numeric_limits<double>::infinity()) < 2) {
    phase();
    return;
  }
  // What the phase throws leaves the parallel region as it would leave the phase alone.
  std::exception_ptr failed;
  std::atomic<bool> done{false};
  on_threads(2, [&](std::ptrdiff_t, std::ptrdiff_t me) {
    if (me == 0) {
      try {
        phase();
      } catch (...) {
        failed = std::current_exception();
      }
      done.store(true, std::memory_order_relaxed);
    } else {
      next->copied = next->batch.copy(next->copied, next->batch.rows, 2, &done);
    }
  });
  if (failed) std::rethrow_exception(failed);
}

template <typename T>
std::size_t Network<T>::first_share_rows(std::size_t rows) const {
  const auto mr = static_cast<std::size_t>(gemm_kernel<T>().mr);
  return std::min(rows, ((rows + mr - 1) / mr + 1) / 2 * mr);
}

template <typename T>
double Network<T>::output_rows_from(std::size_t row0, std::size_t rows, std::size_t batch,
                                    const T* t, bool with_delta) {
  if (rows == 0) return 0;
  const std::size_t n = sizes_.back(), at = row0 * n;
  T* d = with_delta ? d_[n_layers()].data() + at : nullptr;
  return output_rows(loss_, activations_.back(), alpha_, a_[n_layers()].data() + at, t + at, d,
                     rows, n, T(1) / static_cast<T>(batch));
}

template <typename T>
double Network<T>::output_pass(const T* t, std::size_t rows, bool with_delta) {
  // Summed as split_step sums it, two shares' sums added, so the loss is the same bits on any
  // number of threads.
  const std::size_t first = first_share_rows(rows);
  return output_rows_from(0, first, rows, t, with_delta) +
         output_rows_from(first, rows - first, rows, t, with_delta);
}

template <typename T>
double Network<T>::delta_product(std::size_t l, std::size_t row0, std::size_t rows, bool measure,
                                 double team_work) {
  const auto n_in = static_cast<std::ptrdiff_t>(sizes_[l - 1]);
  const auto n_out = static_cast<std::ptrdiff_t>(sizes_[l]);
  Epilogue<T> ep;
  ep.kind = EpilogueKind::derivative;
  ep.activation = activations_[l - 2];
  ep.alpha = alpha_;
  ep.out = a_[l - 1].data() + row0 * n_in;
  ep.measure = measure ? Measure::output : Measure::nothing;
  return gemm<T>(static_cast<std::ptrdiff_t>(rows), n_in, n_out,
                 row_major(d_[l].data() + row0 * n_out, n_out),
                 transposed(weights[l - 1].data(), n_out), d_[l - 1].data() + row0 * n_in, n_in,
                 ep, team_work);
}

template <typename T>
void Network<T>::delta_pass(std::size_t rows, bool measure) {
  for (std::size_t l = n_layers(); l >= 2; --l) {  // D_{l-1} = (D_l W_lᵀ) ⊙ g'(A_{l-1})
    // On the team of the forward product that wrote A_{l-1} (rows × n_in too), so each thread
    // reads g'(A_{l-1}) from the tiles it wrote itself. Alone, the MNIST-shaped 128×128 delta
    // (k = 10) ran on one thread, which read half of A_2 from the other core: 38 µs a step at
    // 2 threads against 10 at 1; on the team, the fit ran 1.3% faster (7 of 8 rounds).
    const double forward_work = double(rows) * double(sizes_[l - 1]) * double(sizes_[l - 2]);
    const double largest = delta_product(l, 0, rows, measure, forward_work);
    if (measure) step_magnitudes_[2 * (l - 2) + 1] = largest;  // max|D_{l-1}|, for the guard
  }
}

template <typename T>
Epilogue<T> Network<T>::update_epilogue(std::size_t l, const OptimizerStep<T>& opt) {
  Epilogue<T> ep;
  ep.kind = EpilogueKind::optimizer;
  ep.param = weights[l - 1].data();
  ep.m = m_weights.empty() ? nullptr : m_weights[l - 1].data();
  ep.v = v_weights.empty() ? nullptr : v_weights[l - 1].data();
  ep.step = opt;
  ep.param_read_across = l >= 2;  // W_l's rows feed D_{l-1}'s columns (delta_pass)
  return ep;
}

template <typename T>
void Network<T>::bias_columns(std::size_t l, std::size_t rows, const OptimizerStep<T>* opt, T* g,
                              std::ptrdiff_t j_begin, std::ptrdiff_t j_end) {
  const auto j0 = static_cast<std::size_t>(j_begin);
  const auto count = static_cast<std::size_t>(j_end - j_begin);
  column_sums(d_[l].data() + j0, rows, count, sizes_[l], g + j0);
  if (opt)
    apply_update(*opt, biases[l - 1].data() + j0, g + j0,
                 m_biases.empty() ? nullptr : m_biases[l - 1].data() + j0,
                 v_biases.empty() ? nullptr : v_biases[l - 1].data() + j0, count, false);
}

template <typename T>
void Network<T>::gradient_pass(const T* x, std::size_t rows, const std::vector<T*>& dw,
                               const std::vector<T*>& db, const OptimizerStep<T>* opt,
                               NextBatch<T>* next) {
  const bool split_k = rows > static_cast<std::size_t>(gemm_kernel<T>().kc);
  for (std::size_t l = n_layers(); l >= 1; --l) {
    const auto n_in = static_cast<std::ptrdiff_t>(sizes_[l - 1]);
    const auto n_out = static_cast<std::ptrdiff_t>(sizes_[l]);
    const T* a_prev = l == 1 ? x : a_[l - 1].data();
    const T* d = d_[l].data();
    const auto batch = static_cast<std::ptrdiff_t>(rows);

    // ∂E/∂W_l = A_{l-1}ᵀ D_l, stored or consumed by the optimizer in the epilogue.
    Epilogue<T> ep;
    T* c = nullptr;
    if (opt) {
      ep = update_epilogue(l, *opt);
      if (split_k) c = reserve(grad_[l], sizes_[l - 1] * sizes_[l]);
    } else {
      c = dw[l - 1];
    }
    // ∂E/∂b_l = Σ_rows D_l, into g, column by column on the thread that computes those columns
    // of ∂E/∂W_l: between the products, on one thread, the first layer's sums read the half of
    // D_1 the other thread wrote (2-4 µs of an MNIST-shaped step at 2 threads).
    T* g = !bias_ ? nullptr : opt ? reserve(row_gradient_, sizes_[l]) : db[l - 1];
    const auto bias = [&](std::ptrdiff_t j0, std::ptrdiff_t j1) {
      bias_columns(l, rows, opt, g, j0, j1);
    };
    if (g) with_columns_done(ep, bias);
    // The output layer's: its product is the narrow one that may run alone (the next rows'
    // copy in a region of its own beside a few µs of work elsewhere would cost what it saves).
    const double work = double(n_in) * double(n_out) * double(batch);
    beside_next_batch(l == n_layers() ? next : nullptr, work, [&] {
      gemm<T>(n_in, n_out, batch, transposed(a_prev, n_in), row_major(d, n_out), c, n_out, ep);
    });
  }
}

template <typename T>
double Network<T>::gradients(const T* x, const T* t, std::size_t rows, const std::vector<T*>& dw,
                             const std::vector<T*>& db) {
  reserve_rows(rows);
  forward_pass(x, rows, false, a_);
  const double sum = output_pass(t, rows, true);
  delta_pass(rows, false);
  gradient_pass(x, rows, dw, db, nullptr);
  return sum / static_cast<double>(rows);
}

template <typename T>
bool Network<T>::apply_gradients(const std::vector<const T*>& dw, const std::vector<const T*>& db,
                                 OptimizerStep<T> opt) {
  const bool careful = moments_unchecked || !gradients_are_safe(dw, db, opt);
  if (careful) save_snapshot();
  begin_step(opt);
  for (std::size_t l = 0; l < n_layers(); ++l) {
    apply_update(opt, weights[l].data(), dw[l], m_weights.empty() ? nullptr : m_weights[l].data(),
                 v_weights.empty() ? nullptr : v_weights[l].data(), weights[l].size(), true);
    if (bias_)
      apply_update(opt, biases[l].data(), db[l], m_biases.empty() ? nullptr : m_biases[l].data(),
                   v_biases.empty() ? nullptr : v_biases[l].data(), biases[l].size(), false);
  }
  return guard_after_update(careful);
}

template <typename T>
std::size_t Network<T>::n_parameters() const {
  std::size_t n = 0;
  for (std::size_t l = 0; l < n_layers(); ++l) n += weights[l].size() + (bias_ ? biases[l].size() : 0);
  return n;
}

template <typename T>
double Network<T>::train_step(const T* x, const T* t, std::size_t rows, OptimizerStep<T> opt,
                              double x_largest, NextBatch<T>* next) {
  reserve_rows(rows);
  if (rows == 1) return online_step(x, t, opt);
  if (!split_step_fits(rows)) return step_by_products(x, t, rows, opt, x_largest, next);
  // Split or not, whichever is timed faster (faster_of_two.hpp).
  using clock = std::chrono::steady_clock;
  FasterOfTwo& choice = split_choice_.at(rows);
  const bool split = choice.choose() == 1;
  const auto start = clock::now();
  const double loss = split ? split_step(x, t, rows, opt, x_largest)
                            : step_by_products(x, t, rows, opt, x_largest, next);
  choice.record(split, std::chrono::duration<double, std::nano>(clock::now() - start).count());
  return loss;
}

template <typename T>
double Network<T>::step_by_products(const T* x, const T* t, std::size_t rows,
                                    OptimizerStep<T>& opt, double x_largest, NextBatch<T>* next) {
  const T* in = x;
  for (std::size_t l = 1; l < n_layers(); ++l) in = forward_layer(l, in, rows, true, a_);
  const std::size_t last = n_layers();
  double loss = 0;
  beside_next_batch(next, double(rows) * double(sizes_[last - 1]) * double(sizes_[last]), [&] {
    forward_layer(last, in, rows, true, a_);
    loss = output_pass(t, rows, true) / static_cast<double>(rows);
  });
  if (!std::isfinite(loss)) return loss;
  delta_pass(rows, true);
  const bool careful = guard_before_update(x, rows, opt, x_largest);
  begin_step(opt);
  gradient_pass(x, rows, {}, {}, &opt, next);
  return guard_after_update(careful) ? loss : std::numeric_limits<double>::quiet_NaN();
}

// Every member defined here and in the header; the other files instantiate their own.
template class Network<float>;
template class Network<double>;

}  // namespace deltaprop