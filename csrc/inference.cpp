// Inference: predictions (Network::forward) and losses (Network::loss) of any number of rows.
//
// No row of an inference meets another, so threads take whole blocks of rows through every
// layer, each block on one thread with that thread's own activations: no activation crosses
// between cores, and no layer waits at a join for the other thread's share. Split inside each
// product instead, as a training step's are (where the weights the products read are rewritten
// every step by the thread that owns their columns), every thread read every row of a block
// from the core that wrote it, and re-read the block for each of its column chunks: an
// MNIST-shaped network predicted 20000 rows at ~296k rows/s on 2 threads (~180k on 1); in
// blocks, ~342k (the vCPUs far apart; docs/performance.md).
//
// A row's outputs do not depend on its block or on the thread that runs it (the GEMM sums each
// row as it would alone), and the loss adds fixed parts' sums in order, so both are the same for
// any thread count.
#include <algorithm>
#include <cstring>
#include <vector>

#include "deltaprop/loss.hpp"
#include "deltaprop/network.hpp"
#include "deltaprop/threads.hpp"

namespace deltaprop {

namespace {

// A loss sums its rows in parts of this many, then adds the parts in order: the same parts for
// any thread count. Blocks are whole parts.
constexpr std::size_t rows_per_part = 64;
// Blocks of a thread's share of the rows, up to this many: the size of its activations. A wide
// network (1024-2048-2048-10) predicted 3% slower on 1 thread in blocks of 256 rows than of 1024,
// each packing all the weights for fewer rows.
constexpr std::size_t max_block_rows = 1024;
// Below this many rows a thread, the threads split each product instead: 300 MNIST-shaped rows
// in blocks of 256 and 44 predicted at 0.69x the speed of split products (2 threads).
constexpr std::size_t min_share_rows = 256;

}  // namespace

template <typename T>
template <typename Finish>
void Network<T>::infer_blocks(const T* x, std::size_t rows, const Finish& finish) {
  if (rows == 0) return;
  std::size_t threads = threads_for(double(multiply_adds_per_row()) * double(rows));
  if (rows < threads * min_share_rows) threads = 1;
  // Each thread's share in the same number of blocks of nearly one size: blocks of 1024 rows
  // left a wide network's 3000 rows 2048 to 952 on 2 threads (0.79x the split products).
  const std::size_t share = (rows + threads - 1) / threads;
  const std::size_t per_thread = (share + max_block_rows - 1) / max_block_rows;
  const std::size_t even = (rows + threads * per_thread - 1) / (threads * per_thread);
  const std::size_t block_rows = (even + rows_per_part - 1) / rows_per_part * rows_per_part;
  const std::size_t blocks = (rows + block_rows - 1) / block_rows;
  const int team = static_cast<int>(std::min(blocks, threads));
  if (inference_a_.size() < std::size_t(team)) inference_a_.resize(team);
  for (int me = 0; me < team; ++me) {  // allocated here, where a failure can still be raised
    std::vector<Buffer<T>>& a = inference_a_[me];
    a.resize(n_layers() + 1);
    for (std::size_t l = 1; l <= n_layers(); ++l)
      reserve(a[l], std::min(rows, block_rows) * sizes_[l]);
  }
  auto run_block = [&](std::size_t block, std::vector<Buffer<T>>& a) {
    const std::size_t first = block * block_rows, count = std::min(block_rows, rows - first);
    forward_pass(x + first * sizes_[0], count, false, a);
    finish(first, count, a[n_layers()].data());
  };
  if (team == 1) {  // the products split between threads themselves, if at all
    for (std::size_t block = 0; block < blocks; ++block) run_block(block, inference_a_[0]);
    return;
  }
  ChunkClaims claims(static_cast<std::ptrdiff_t>(blocks), team);
  on_threads(team, [&](std::ptrdiff_t, std::ptrdiff_t me) {
    for (std::ptrdiff_t block; (block = claims.next(me)) >= 0;)
      run_block(std::size_t(block), inference_a_[me]);
  });
}

template <typename T>
void Network<T>::forward(const T* x, std::size_t rows, T* out) {
  const std::size_t n_out = sizes_.back();
  infer_blocks(x, rows, [&](std::size_t first, std::size_t count, T* z) {
    output_rows(loss_, activations_.back(), alpha_, z, static_cast<const T*>(nullptr),
                static_cast<T*>(nullptr), count, n_out, T(1) / static_cast<T>(count));
    std::memcpy(out + first * n_out, z, count * n_out * sizeof(T));
  });
}

template <typename T>
double Network<T>::loss(const T* x, const T* t, std::size_t rows) {
  const std::size_t n_out = sizes_.back();
  std::vector<double> sums((rows + rows_per_part - 1) / rows_per_part, 0.0);
  infer_blocks(x, rows, [&](std::size_t first, std::size_t count, T* z) {
    for (std::size_t r = 0; r < count; r += rows_per_part) {
      const std::size_t part = std::min(rows_per_part, count - r);
      sums[(first + r) / rows_per_part] =
          output_rows(loss_, activations_.back(), alpha_, z + r * n_out, t + (first + r) * n_out,
                      static_cast<T*>(nullptr), part, n_out, T(1) / static_cast<T>(part));
    }
  });
  double sum = 0.0;
  for (double s : sums) sum += s;
  return sum / static_cast<double>(rows);
}

template void Network<float>::forward(const float*, std::size_t, float*);
template void Network<double>::forward(const double*, std::size_t, double*);
template double Network<float>::loss(const float*, const float*, std::size_t);
template double Network<double>::loss(const double*, const double*, std::size_t);

}  // namespace deltaprop
