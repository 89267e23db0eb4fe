// A multilayer perceptron that owns its parameters, optimizer state and workspace, and runs
// whole training steps and epochs without returning to Python (DESIGN §2).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <mutex>
#include <vector>

#include "deltaprop/activation.hpp"
#include "deltaprop/batch_rows.hpp"
#include "deltaprop/buffer.hpp"
#include "deltaprop/epoch_order.hpp"
#include "deltaprop/faster_of_two.hpp"
#include "deltaprop/gemm.hpp"
#include "deltaprop/loss.hpp"
#include "deltaprop/optimizer.hpp"

namespace deltaprop {

// fit_epoch streams the rows it gathers (BatchRows::streamed) while a cache line's round trip
// between its first two threads' cores takes longer than `ns` (150 unless set; 0: whenever two
// threads gather, infinity: never). Returns the bound it replaces. For tests and benchmarks.
double set_stream_beyond_round_trip_ns(double ns);

template <typename T>
class Network {
 public:
  // sizes[0] inputs, sizes[l] units of layer l; activations[l-1] is layer l's activation.
  Network(std::vector<std::size_t> sizes, std::vector<Activation> activations, Loss loss,
          T alpha, bool bias);

  std::size_t n_layers() const { return sizes_.size() - 1; }
  // Multiply-adds of one row through every layer's product, Σ n_{l-1}·n_l: the unit of work
  // the thread policy and the epoch's clock reads are sized by.
  std::size_t multiply_adds_per_row() const {
    std::size_t macs = 0;
    for (std::size_t l = 0; l < n_layers(); ++l) macs += sizes_[l] * sizes_[l + 1];
    return macs;
  }
  const std::vector<std::size_t>& sizes() const { return sizes_; }
  bool has_bias() const { return bias_; }

  // Row-major parameters: weights[l] is sizes[l]×sizes[l+1], biases[l] has sizes[l+1].
  std::vector<Buffer<T>> weights, biases;

  // Optimizer state: first moments (SGD velocity, Adam m), second moments (Adam v), step count.
  std::vector<Buffer<T>> m_weights, m_biases, v_weights, v_biases;
  std::int64_t step = 0;
  void reset_optimizer();
  // The kind the state belongs to (-1: none yet); a step of another kind starts afresh.
  int state_kind = -1;
  // Whether the moments may lie beyond the bounds an unguarded step needs, as moments given to
  // set_optimizer_state, or left by a careful step's huge but finite gradient, may: every step
  // can then be undone (guard_from_magnitudes) until one leaves them within bounds.
  // check_moments() measures them; where one is not finite it returns false and changes nothing.
  bool moments_unchecked = false;
  bool check_moments();
  // To be called by whatever writes `weights` other than a step (set_weights, a restore).
  void weights_changed() { weights_bound_ = std::numeric_limits<double>::infinity(); }

  // Output activations of `rows` samples (row-major, sizes[0] features each) into out.
  void forward(const T* x, std::size_t rows, T* out);
  // Mean loss of the batch against dense targets t (rows × sizes.back()).
  double loss(const T* x, const T* t, std::size_t rows);
  // Gradients of the mean loss into dw[l] and db[l] (db ignored without biases); returns the loss.
  double gradients(const T* x, const T* t, std::size_t rows, const std::vector<T*>& dw,
                   const std::vector<T*>& db);
  // One optimizer step from given gradients (laid out like weights/biases), e.g. gradients
  // summed over MPI ranks. Guarded like train_step: a step that would make a parameter or
  // moment non-finite is undone and returns false.
  bool apply_gradients(const std::vector<const T*>& dw, const std::vector<const T*>& db,
                       OptimizerStep<T> opt);
  // Number of parameters: Σ weights + biases, the length of a flat gradient buffer.
  std::size_t n_parameters() const;
  // One optimizer step on one batch; returns the batch's loss before the update. A non-finite
  // loss is returned without updating anything, so the network keeps its last good weights;
  // a step that would make a parameter or moment non-finite (an overflowing gradient under a
  // finite loss) is undone and returns NaN. `x_largest` is max |x| where the caller knows a
  // bound (fit_epoch: of all of X); negative, the divergence guard scans the batch for it.
  // Where `next` is given, a thread the step leaves idle copies rows of it meanwhile.
  double train_step(const T* x, const T* t, std::size_t rows, OptimizerStep<T> opt,
                    double x_largest = -1.0, NextBatch<T>* next = nullptr);

  // Called between steps of an epoch with the number of samples done; returning false stops
  // the epoch after the last completed step.
  using Progress = std::function<bool(std::size_t samples_done, double loss_sum)>;
  struct EpochResult {
    // Σ batch loss · batch rows / n over the completed steps: the epoch's mean loss once every
    // step is done. Each term is at most its batch's loss, so the mean of finite losses is
    // finite, where a plain sum of float64 losses near their maximum overflowed.
    double loss_mean = 0;
    std::size_t samples = 0;   // rows in the completed steps
    bool stopped = false;      // progress returned false
    bool diverged = false;     // a batch's loss was not finite; its update was not applied
    std::size_t batch = 0;     // index of the diverged batch
  };
  // `x_largest`: max |X| over all n samples (the bindings' finiteness check computes it), the
  // divergence guard's bound on every batch's inputs, so no step scans its batch for it.
  EpochResult fit_epoch(const T* x, const T* t, std::size_t n, std::size_t batch_size,
                        bool shuffle, std::uint64_t seed, std::uint64_t epoch,
                        const OptimizerStep<T>& opt, const Progress& progress, double x_largest);

  // One user at a time: the bindings hold this while a call runs without the GIL.
  std::mutex mutex;

 private:
  std::vector<std::size_t> sizes_;
  std::vector<Activation> activations_;
  Loss loss_;
  T alpha_;
  bool bias_;

  // Per-layer buffers sized for `capacity_` rows: a_[l] = A_l for l >= 1 (a_[L] holds Z_L,
  // then A_L), d_[l] = D_l, grad_[l] = split-k scratch for the fused gradient GEMM.
  std::size_t capacity_ = 0;
  std::vector<Buffer<T>> a_, d_, grad_;
  void reserve_rows(std::size_t rows);

  // Inference (forward, loss) runs blocks of rows through every layer, each block on one thread
  // with that thread's own activations here (inference.cpp).
  std::vector<std::vector<Buffer<T>>> inference_a_;
  template <typename Finish>
  void infer_blocks(const T* x, std::size_t rows, const Finish& finish);

  // Forward through every layer from x (rows of sizes[0]) into `a` (a[l] = A_l for l >= 1, sized
  // for the rows: a_ in training); leaves Z_L in a[L]. For a training step (measure), each hidden
  // layer's epilogue measures max|A_l| for the guard (step_magnitudes_), where the activations are
  // still in L1: a pass of its own over them and the deltas took 1.4-1.6% of a digits- or
  // MNIST-shaped fit (AMD EPYC, 1 thread), on one thread even when two were training.
  // Predictions and losses need no measure.
  void forward_pass(const T* x, std::size_t rows, bool measure, std::vector<Buffer<T>>& a);
  // Layer l's part of it, from `in` (A_{l-1}); returns a[l].
  const T* forward_layer(std::size_t l, const T* in, std::size_t rows, bool measure,
                         std::vector<Buffer<T>>& a);
  // Its product for `rows` rows into `out`; returns max|A_l| where measure asks (hidden layers).
  double forward_product(std::size_t l, const T* in, std::size_t rows, bool measure, T* out);
  // Output activation, loss and (if with_delta) D_L for the rows in a_[L]; returns the loss sum.
  double output_pass(const T* t, std::size_t rows, bool with_delta);
  // The same for rows row0.. of a batch of `batch` rows (t: the batch's targets).
  double output_rows_from(std::size_t row0, std::size_t rows, std::size_t batch, const T* t,
                          bool with_delta);
  // Backward from D_L: every delta D_{L-1}..D_1 with the old weights first, then each layer's
  // gradient GEMM, whose epilogue either stores the gradient (dw/db non-empty) or applies `opt`
  // in place. All deltas exist before the first update, so the divergence guard can look at them;
  // delta_pass's epilogues measure max|D_l| for it (measure), as forward_pass's do max|A_l|.
  void delta_pass(std::size_t rows, bool measure);
  // D_{l-1} = (D_l W_lᵀ) ⊙ g'(A_{l-1}) for rows row0..; returns max|D_{l-1}| where measured.
  double delta_product(std::size_t l, std::size_t row0, std::size_t rows, bool measure,
                       double team_work);
  // The gradient product's epilogue that applies `opt` to W_l. ∂E/∂b_l = Σ_rows D_l for columns
  // j_begin..j_end into the same elements of g, then, with `opt`, their update: the work that
  // goes with those columns of the gradient product (Epilogue::columns_done).
  Epilogue<T> update_epilogue(std::size_t l, const OptimizerStep<T>& opt);
  void bias_columns(std::size_t l, std::size_t rows, const OptimizerStep<T>* opt, T* g,
                    std::ptrdiff_t j_begin, std::ptrdiff_t j_end);
  void gradient_pass(const T* x, std::size_t rows, const std::vector<T*>& dw,
                     const std::vector<T*>& db, const OptimizerStep<T>* opt,
                     NextBatch<T>* next = nullptr);
  // train_step's batched step, product by product, each on the threads its size repays.
  double step_by_products(const T* x, const T* t, std::size_t rows, OptimizerStep<T>& opt,
                          double x_largest, NextBatch<T>* next);
  // The same step of a network whose products are each too small to share threads, split
  // between two (split_step.cpp): each takes a share of the rows through forward, loss and
  // deltas, then a share of every layer's columns of the gradients and updates. Same bits.
  // Whether it may run for a batch of `rows`, and which of the two train_step runs, by their
  // times at that batch size.
  double split_step(const T* x, const T* t, std::size_t rows, OptimizerStep<T>& opt,
                    double x_largest);
  bool split_step_fits(std::size_t rows) const;
  FasterOfTwoBySize split_choice_;
  // Its two halves for one share: rows row0.. of the batch (writing the share's guard
  // magnitudes and loss sum), and share 0 or 1 of each layer's columns.
  void rows_share(std::size_t row0, std::size_t rows, std::size_t batch, const T* x, const T* t,
                  double x_largest, double* largest, double& loss_sum);
  void columns_share(int share, const T* x, std::size_t rows, const OptimizerStep<T>& opt,
                     T* bias_gradient);
  // The rows of a batch's first share; output_pass sums the loss in the same two shares.
  std::size_t first_share_rows(std::size_t rows) const;
  // phase(), a part of the step of `work` multiply-adds. Where it runs on one thread (the
  // output layer of an MNIST-shaped network: its products, the output pass) and another is
  // free, that thread copies the next rows of `next` meanwhile, until the phase is done.
  template <typename Phase>
  void beside_next_batch(NextBatch<T>* next, double work, const Phase& phase);

  // The divergence guard. An update is provably finite when every gradient is bounded well
  // below sqrt(max(T)) (so g², lr·g and the moments stay finite): |∂E/∂W_l| <= B·max|A_{l-1}|·
  // max|D_l|, O(B·Σ n_l) to check. Only a step that fails the bound pays for a snapshot of the
  // parameters and optimizer state, which is restored if the step did produce NaN or infinity.
  // The bound from max|A_{l-1}| = largest[2(l-1)] and max|D_l| = largest[2(l-1)+1].
  bool update_is_safe(const double* largest, std::size_t rows, const OptimizerStep<T>& opt);
  // The same bound for gradients given whole (apply_gradients): max|g| itself.
  bool gradients_are_safe(const std::vector<const T*>& dw, const std::vector<const T*>& db,
                          const OptimizerStep<T>& opt);
  // Whether a step with gradients at most g, before weight decay, keeps everything finite
  // (divergence_guard.cpp).
  bool step_is_safe(const OptimizerStep<T>& opt, double g);
  // An upper bound on every first moment's magnitude: exact where check_moments measures them,
  // then carried by each unguarded step (first_moments_after_, from step_is_safe).
  double first_moments_ = 0, first_moments_after_ = 0;
  // What weight decay adds to a gradient at most, wd·max|W|, for a step that decays weights:
  // weights near the largest value (set from outside, or left by a careful step) times a decay
  // above 1, which lr·wd <= 1 allows, overflow the sum. weights_bound_ bounds every weight's
  // magnitude: infinite where unknown (weights_changed, a careful step), measured by a scan, then
  // carried like the first moments, as an unguarded step moves no parameter by more than its
  // largest_move_ (step_is_safe); rescanned only where the carried bound would fail the guard.
  // A scan before every step cost 64-128-64-10 online with momentum and weight decay 17%, and an
  // MNIST-shaped fit at 2 threads 14% (it read tiles the other thread had just written).
  double decay_bound(const OptimizerStep<T>& opt);
  double weights_bound_ = std::numeric_limits<double>::infinity(), largest_move_ = 0;
  struct Snapshot {
    std::vector<Buffer<T>> weights, biases, m_weights, m_biases, v_weights, v_biases;
    std::int64_t step = 0;
    int state_kind = -1;
  };
  Snapshot snapshot_;
  void save_snapshot();
  void restore_snapshot();

 public:
  // Used by train_step and the online step around an update: the guard's two halves. The first,
  // after forward_pass and delta_pass, scans x (unless x_largest >= 0 bounds it) and D_L, and takes
  // the hidden layers' magnitudes from those passes; guard_from_magnitudes takes them all from a
  // caller that has them.
  bool guard_before_update(const T* x, std::size_t rows, const OptimizerStep<T>& opt,
                           double x_largest);
  // Its scans for rows row0.. of the batch: largest[0] = max|x| (x_largest where that bounds
  // it), largest[2L-1] = max|D_L|.
  void measure_ends(const T* x, std::size_t row0, std::size_t rows, double x_largest,
                    double* largest);
  bool guard_from_magnitudes(const double* largest, std::size_t rows, const OptimizerStep<T>& opt);
  // After the update: an unguarded step carries the bounds on the first moments and the weights
  // (step_is_safe); a careful one is checked, and undone if it left anything not finite
  // (divergence_guard.cpp).
  bool guard_after_update(bool careful) {
    if (careful) return check_careful_update();
    first_moments_ = first_moments_after_;
    // (1 + 2ε): a weight's rounding, which would otherwise compound over millions of steps.
    constexpr double rounding = 1 + 2 * double(std::numeric_limits<T>::epsilon());
    weights_bound_ = (weights_bound_ + largest_move_) * rounding;
    return true;
  }
  bool check_careful_update();

 private:
  // Allocate the moments `opt` needs, count the step and fill in Adam's bias corrections.
  void begin_step(OptimizerStep<T>& opt);
  // train_step for one sample: matrix-vector loops, no GEMM, one copy per ISA (online.cpp).
  double online_step(const T* x, const T* t, const OptimizerStep<T>& opt);

 public:
  // The body the per-ISA copies of online_step inline; not for other callers.
  double online_step_body(const T* x, const T* t, OptimizerStep<T> opt);

 private:
  // The online fast path of networks at most one 32-byte vector wide (online_tiny.cpp), used
  // by fit_epoch for a whole epoch: per layer, W's rows, then Wᵀ's rows (W's columns, for the
  // backward product: the first layer's stay zero), then the bias, each zero-padded to
  // tiny_lanes, at tiny_at_[l]; twice, for a step reads one copy and writes the other. Loaded
  // from weights and biases before the epoch, written back after it.
  static constexpr std::size_t tiny_lanes = 32 / sizeof(T), tiny_max_layers = 16;
  Buffer<T> tiny_;
  std::vector<std::size_t> tiny_at_;
  bool tiny_fits(std::size_t batch_size, const OptimizerStep<T>& opt) const;
  void tiny_load();
  void tiny_store();
  // Online steps on tiny_ for the samples result.samples..end of an epoch of `rows` samples
  // (order: the epoch's order, or null for samples in place), each adding loss · share to
  // result.loss_mean; stops at a step whose loss or update is not finite, with that step undone
  // and result.diverged set. One copy per ISA.
  void tiny_run(const T* x, const T* t, std::size_t rows, const std::int64_t* order,
                std::size_t end, double share, const OptimizerStep<T>& opt, EpochResult& result);

 public:
  // The body the per-ISA copies of tiny_run inline; not for other callers. `every`: the
  // activation of every layer, known at compile time (sigmoid or tanh), or softmax, which no
  // tiny network has, for each layer's own, read as the step runs.
  template <Activation every>
  void tiny_run_body(const T* x, const T* t, std::size_t rows, const std::int64_t* order,
                     std::size_t end, double share, OptimizerStep<T> opt, EpochResult& result);

 private:
  // One row of gradients (a bias gradient, or a weight row in the online step), reused.
  Buffer<T> row_gradient_;
  // The guard's magnitudes of the step at hand (update_is_safe), two per layer.
  std::vector<double> step_magnitudes_;
  // Each share's magnitudes in split_step, two per layer each.
  std::vector<double> share_magnitudes_;
  // The order of the epoch at hand, and the next epoch's where the tiny online run sorted it on
  // a second thread (fit_epoch).
  EpochOrder epoch_order_, next_epoch_order_;
  // Whether fit_epoch streams the rows it gathers (BatchRows::streamed): while the latest round
  // trip between its first two threads' cores was long (round_trip.hpp).
  bool stream_batches_ = false;
};

extern template class Network<float>;
extern template class Network<double>;

}  // namespace deltaprop
