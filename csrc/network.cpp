// The layer loops, the training step and the epoch loop of the native backend.
//
// One step: forward (one GEMM per layer, bias + activation in its epilogue) -> output pass
// (activation, loss and D_L fused) -> for l = L..1: the delta GEMM D_{l-1} = (D_l W_lᵀ) ⊙ g'
// with the old W_l, then the gradient GEMM A_{l-1}ᵀ D_l whose epilogue updates W_l in place.
#include "deltaprop/network.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "deltaprop/column_sums.hpp"
#include "deltaprop/dispatch.hpp"
#include "deltaprop/gemm.hpp"
#include "deltaprop/magnitude.hpp"
#include "deltaprop/prefetch.hpp"
#include "deltaprop/round_trip.hpp"
#include "deltaprop/threads.hpp"

namespace deltaprop {

namespace {

constexpr std::uint64_t golden = 0x9E3779B97F4A7C15ull;

std::uint64_t splitmix64(std::uint64_t z) {
  z += golden;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

// The keys are uniform 64-bit hashes, sorted stably (ties in index order, as NumPy's stable
// argsort keeps them). Each is stored as one word: its top bits with the low ones replaced by its
// index, so words compare as (key, index) up to the bits given away. A counting pass on the top
// bits places them in buckets of about one word each, and one insertion sort over the whole array
// finishes: it moves words only within their bucket, and most words do not move at all.
// O(n), 6.6 ns a sample for 200k samples where buckets of eight words and a sort per bucket took
// 12 (the loop over buckets of varying size mispredicted its branches; a comparison sort took
// ~100). A key is cheaper to compute twice than to store between the counting and placing pass.
template <typename Count>
void EpochOrder::sort_keys(std::size_t n, std::uint64_t stream, std::vector<Count>& starts) {
  auto key = [stream](std::size_t i) { return splitmix64(stream + i * golden); };
  int index_bits = 1;
  while ((std::uint64_t(1) << index_bits) < n) ++index_bits;  // n < 2^63: it is a memory size
  const std::uint64_t index_mask = (std::uint64_t(1) << index_bits) - 1;
  // Up to 2^20 buckets: the counters (4 MB) and the words (8 MB) then still fit L3.
  int bits = 1;
  while (bits < 20 && (std::size_t(1) << bits) < n) ++bits;
  const std::size_t buckets = std::size_t(1) << bits;
  starts.assign(buckets + 1, 0);
  Count* start = starts.data();
  for (std::size_t i = 0; i < n; ++i) ++start[(key(i) >> (64 - bits)) + 1];
  for (std::size_t b = 0; b < buckets; ++b) start[b + 1] += start[b];
  // The words are sorted where the order will lie, and then become it (an index < 2^63 reads
  // the same as uint64 and int64, which may alias).
  order.resize(n);
  auto* words = reinterpret_cast<std::uint64_t*>(order.data());
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t k = key(i);
    words[start[k >> (64 - bits)]++] = (k & ~index_mask) | i;
  }
  for (std::size_t j = 1; j < n; ++j) {
    const std::uint64_t word = words[j];
    if (words[j - 1] <= word) continue;
    std::size_t k = j;
    for (; k > 0 && words[k - 1] > word; --k) words[k] = words[k - 1];
    words[k] = word;
  }
  // Keys equal in their stored bits (one pair in a few million samples) sit together in index
  // order; their full keys decide.
  auto full = [&](std::uint64_t word) { return key(word & index_mask); };
  for (std::size_t j = 1; j < n; ++j) {
    if (((words[j] ^ words[j - 1]) & ~index_mask) != 0) continue;
    std::size_t end = j + 1;
    while (end < n && ((words[end] ^ words[j]) & ~index_mask) == 0) ++end;
    std::stable_sort(words + j - 1, words + end,
                     [&](std::uint64_t a, std::uint64_t b) { return full(a) < full(b); });
    j = end - 1;
  }
  for (std::size_t i = 0; i < n; ++i) words[i] &= index_mask;
}

void EpochOrder::compute(std::size_t n, std::uint64_t seed, std::uint64_t epoch) {
  valid_ = false;  // until the sort is done: an allocation may throw
  const std::uint64_t stream = splitmix64(splitmix64(seed) ^ epoch);
  // 32-bit counters where they suffice: the counting pass's random increments then stay in
  // L2 longer (200k samples: 7.0 against 8.0 ns a sample).
  if (n < (std::size_t(1) << 32))
    sort_keys(n, stream, starts32_);
  else
    sort_keys(n, stream, starts64_);
  valid_ = true;
  seed_ = seed;
  epoch_ = epoch;
}

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

namespace {

// Gathered rows are streamed (BatchRows::streamed) while a cache line takes longer than this
// to go to the other thread's core and back: longer than the line would take from memory, which
// is where a streamed row is read from. On the Zen 4 EPYC, vCPUs ~55 ns apart gained nothing
// from it (an MNIST-shaped fit at 2 threads 1.2% slower, at 1 thread 1.5%), ~330-540 ns apart
// they did (6.5% faster).
std::atomic<double> stream_beyond_ns{150};

// The round trip is measured in every this many gathers (~1-6 µs; an MNIST-shaped step ~700).
constexpr std::size_t round_trip_every = 64;

// Prefetching a batch larger than this stalls the loop that asks: the requests queue behind the
// core's few line-fill buffers. An MNIST-shaped fit (401 KB a batch) trained 3% faster without
// them; its 3 KB rows are long enough for the hardware prefetcher to follow each one.
constexpr std::size_t prefetch_up_to_bytes = 32 * 1024;

// Sorting an epoch's order costs about as much a sample (6.6 ns) as 700 multiply-adds of a GEMM,
// the unit of threads_for: a second thread is worth its region from a few thousand samples on.
constexpr double sort_work_per_sample = 700.0;

}  // namespace

double set_stream_beyond_round_trip_ns(double ns) { return stream_beyond_ns.exchange(ns); }

template <typename T>
typename Network<T>::EpochResult Network<T>::fit_epoch(
    const T* x, const T* t, std::size_t n, std::size_t batch_size, bool shuffle,
    std::uint64_t seed, std::uint64_t epoch, const OptimizerStep<T>& opt,
    const Progress& progress, double x_largest) {
  const std::size_t n_in = sizes_[0], n_out = sizes_.back();
  if (shuffle) {
    if (next_epoch_order_.holds(n, seed, epoch))
      std::swap(epoch_order_, next_epoch_order_);
    else
      epoch_order_.compute(n, seed, epoch);
  }
  const std::vector<std::int64_t>& order = epoch_order_.order;
  // A shuffled batch is gathered into contiguous rows (A_0 of the step); an unshuffled one is
  // used where it lies. Steps alternate between two buffers: while one step reads a batch from
  // one, a thread its one-thread phases leave idle copies rows of the next into the other.
  Buffer<T> batch_x[2], batch_t[2];
  if (shuffle)
    for (int i = 0; i < 2; ++i) {
      reserve(batch_x[i], std::min(batch_size, n) * n_in);
      reserve(batch_t[i], std::min(batch_size, n) * n_out);
    }
  int current = 0;
  std::size_t copied_ahead = 0;  // rows of this step's batch that the step before copied
  // Read the clock about every 2^20 multiply-adds (tens of microseconds), not every step: an
  // online step of a tiny network is shorter than the clock read itself.
  const std::size_t clock_stride = std::max<std::size_t>(
      1, (std::size_t(1) << 20) / std::max<std::size_t>(1, multiply_adds_per_row() * batch_size));
  using clock = std::chrono::steady_clock;
  auto last_report = clock::now();
  std::size_t steps_to_clock = clock_stride;
  EpochResult result;
  const double batch_share = double(batch_size) / double(n);  // a full batch's weight in the mean
  auto keep_going = [&] {  // the progress callback, at most every 0.1 s; false: stop the epoch
    if (clock::now() - last_report < std::chrono::milliseconds(100)) return true;
    last_report = clock::now();
    if (progress(result.samples, result.loss_mean * static_cast<double>(n))) return true;
    result.stopped = true;
    return false;
  };
  // Networks one vector wide train on tiny_ for the whole epoch (online_tiny.cpp), in runs of
  // steps between reads of the clock.
  if (tiny_fits(batch_size, opt)) {
    tiny_load();
    // A tiny step is one chain of dependent operations on one core. A second thread meanwhile
    // sorts the next epoch's order, which would otherwise cost the next epoch 6.6 ns a sample of
    // the ~60 a 2-3-1 sample takes. (A failed allocation there leaves that order unsorted.)
    const int threads = shuffle ? std::min(2, threads_for(double(n) * sort_work_per_sample)) : 1;
    on_threads(threads, [&](std::ptrdiff_t, std::ptrdiff_t me) {
      if (me == 0) {
        while (result.samples < n) {
          const std::size_t end = progress ? std::min(n, result.samples + clock_stride) : n;
          tiny_run(x, t, n, shuffle ? order.data() : nullptr, end, batch_share, opt, result);
          if (result.diverged || (progress && !keep_going())) break;
        }
      } else if (me == 1) {
        try {
          next_epoch_order_.compute(n, seed, epoch + 1);
        } catch (...) {
        }
      }
    });
    tiny_store();
    return result;
  }
  // A batch this small is asked for (into L1) the step before its own: see prefetch_up_to_bytes.
  const auto asked_a_step_ahead = [&](std::size_t count) {
    return count * (n_in + n_out) * sizeof(T) <= prefetch_up_to_bytes;
  };
  for (std::size_t start = 0, index = 0; start < n; start += batch_size, ++index) {
    const std::size_t rows = std::min(batch_size, n - start);
    const T* bx = x + start * n_in;
    const T* bt = t + start * n_out;
    if (shuffle) {  // the samples `ahead` steps on: enough to hide a miss behind the steps
      const std::size_t ahead = rows == 1 ? online_prefetch_ahead : 1;
      const std::size_t next = start + ahead * batch_size;
      const std::size_t count = next < n ? std::min(batch_size, n - next) : 0;
      if (asked_a_step_ahead(count)) {
        prefetch_rows(x, n_in, order.data() + next, count);
        prefetch_rows(t, n_out, order.data() + next, count);
      }
    }
    if (shuffle && rows == 1) {  // one row is contiguous where it lies
      bx = x + order[start] * n_in;
      bt = t + order[start] * n_out;
    } else if (shuffle) {
      // Rows read from random places cost ~0.5 ns an element (an MNIST-shaped batch: 57 µs, a
      // tenth of its step at 2 threads), some 40 multiply-adds' worth: shared between threads
      // from the same amount of work as a GEMM, the MNIST-shaped gather took 31 µs.
      constexpr double multiply_adds_per_element = 40;
      const std::size_t left = rows - copied_ahead;
      const double work = double(left) * double(n_in + n_out) * multiply_adds_per_element;
      // A batch small enough to be asked for a whole step ahead is in L1 already, and is not
      // streamed past it.
      const bool in_l1 = asked_a_step_ahead(rows);
      const BatchRows<T> batch{x, t, n_in, n_out, order.data() + start, rows,
                               batch_x[current].data(), batch_t[current].data(),
                               stream_batches_ && !in_l1};
      const bool probe = !in_l1 && index % round_trip_every == 0;
      alignas(64) std::atomic<std::int64_t> ball{0};
      double round_trip = 0;  // stays 0 where the gather runs on one thread
      on_threads(threads_for(work), [&](std::ptrdiff_t team, std::ptrdiff_t me) {
        if (probe) time_round_trip(ball, team, me, round_trip);
        batch.copy(copied_ahead + left * me / team, copied_ahead + left * (me + 1) / team,
                   in_l1 ? 0 : 2);
      });
      // (NaN, threads that did not meet in time as they share a CPU, never streams.)
      if (probe) stream_batches_ = round_trip > stream_beyond_ns.load();
      bx = batch_x[current].data();
      bt = batch_t[current].data();
    }
    // The next batch's rows, copied during this step where a thread is idle (not those asked
    // for a step ahead: their gather is a copy from L1). MNIST-shaped, 2 threads: ~40% of the
    // rows, copied during the 10-wide layer's phases; the gather 31-32 → 20 µs, the step
    // 659-661 → 651 µs (each one-thread phase ~0.5 µs longer for its region).
    const std::size_t next_start = start + batch_size;
    const bool copy_ahead = shuffle && rows > 1 && next_start < n && !asked_a_step_ahead(rows);
    NextBatch<T> next{};
    if (copy_ahead)
      next.batch = {x, t, n_in, n_out, order.data() + next_start,
                    std::min(batch_size, n - next_start), batch_x[1 - current].data(),
                    batch_t[1 - current].data(), stream_batches_};
    const double loss = train_step(bx, bt, rows, opt, x_largest, copy_ahead ? &next : nullptr);
    copied_ahead = next.copied;
    current = 1 - current;
    if (!std::isfinite(loss)) {
      result.diverged = true;
      result.batch = index;
      break;
    }
    result.loss_mean += loss * (rows == batch_size ? batch_share : double(rows) / double(n));
    result.samples += rows;
    if (progress && --steps_to_clock == 0) {  // a countdown: a division per step costs ~10 ns
      steps_to_clock = clock_stride;
      if (!keep_going()) break;
    }
  }
  return result;
}

template class Network<float>;
template class Network<double>;

}  // namespace deltaprop
