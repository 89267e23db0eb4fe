// The GEMM macro level, in the BLIS manner: loops over column blocks (nc), depth blocks (kc) and
// row blocks (mc) around the dispatched MR×NR microkernel, with B packed into NR-wide panels and
// A into MR-tall panels so the microkernel streams both contiguously.
//
// Threads split the packing loops and the grid of output tiles. Every output element is
// produced by exactly one tile whose k-sum runs in the same order whatever the thread count, so
// results are bitwise identical for any number of threads.
#include <algorithm>

#include "deltaprop/buffer.hpp"
#include "deltaprop/dispatch.hpp"
#include "deltaprop/gemm.hpp"
#include "deltaprop/magnitude.hpp"
#include "element_loops.hpp"
#include "packing.hpp"
#include "unpacked.hpp"

#if DELTAPROP_X86
#include <cpuid.h>
#endif

namespace deltaprop {

namespace {

constexpr int max_tile = 256;  // MR·NR of the largest microkernel (8×32)

#if DELTAPROP_X86
// CPUID leaf 0x80000001, ECX bit 8: PREFETCHW (AMD's 3DNow! prefetch flag; Intel's from
// Broadwell on). Read from CPUID, not __builtin_cpu_supports, whose name for the feature Clang
// (the fuzzing build's compiler) does not know; once, as the module loads, before any thread
// of ours runs (a function's static, set by the first GEMM's threads, was a race to TSan).
bool cpu_has_prefetchw() {
  unsigned eax, ebx, ecx, edx;
  return __get_cpuid(0x80000001u, &eax, &ebx, &ecx, &edx) && ((ecx >> 8) & 1u);
}
const bool has_prefetchw = cpu_has_prefetchw();
#endif

// Ask for the rows×cols block of parameters at p, which the update of the next tile rewrites,
// with the intent to write where the CPU has PREFETCHW. The other core may hold those lines: a
// delta product reads W's rows across the column split the update follows. A plain prefetch
// brings a shared copy, and each store then waits while the other core's copy is invalidated:
// a wide-shaped fit at 2 threads, the vCPUs ~400-470 ns apart, ran its 2048×2048 update 1.60×
// faster than at 1 thread against 1.9× for the other products, and the fit 6% faster (4 of 4
// paired rounds) with PREFETCHW (GCC's write prefetch is a plain one unless built for a CPU
// that has it).
template <typename T>
void prefetch_block_to_write(const T* p, std::ptrdiff_t ld, std::ptrdiff_t rows,
                             std::ptrdiff_t cols) {
#if DELTAPROP_X86
  if (has_prefetchw) {
    ask_for_block(p, ld, rows, cols, [](const char* line) {
      asm volatile("prefetchw %0" : : "m"(*line));
    });
    return;
  }
#endif
  prefetch_block(p, ld, rows, cols);
}

// A block of C at least this wide reuses each A panel across so many B panels that packing it
// pays: the microkernel then streams A from one sequential panel instead of MR rows (or kc
// columns) far apart in memory. Narrower blocks read A in place where it has a unit stride.
constexpr std::ptrdiff_t pack_a_from_columns = 512;

template <typename T>
bool reads_a_in_place(MatrixView<T> a, std::ptrdiff_t block_columns) {
  return (a.cs == 1 || a.rs == 1) && block_columns < pack_a_from_columns;
}


template <typename T>
double gemm_unpacked(std::ptrdiff_t m, std::ptrdiff_t n, std::ptrdiff_t k, MatrixView<T> a,
                     MatrixView<T> b, T* c, std::ptrdiff_t ldc, const Epilogue<T>& ep) {
  const ElementLoops<T> loops = element_loops<T>();
  const std::ptrdiff_t kc = gemm_kernel<T>(n).kc;  // as a packed product of C's width sums
  // Rows go through the epilogue a block at a time: for rows of a few output units one call a
  // row cost more than the sums (a 13-64-1 network at batch 32 trained 1.3× faster).
  constexpr std::ptrdiff_t block_elements = 256;
  // One column of C from an A whose columns are contiguous (Aᵀ D, the gradient of a layer with
  // one output unit) is computed as the row Cᵀ = Bᵀ Aᵀ, axpys over A's columns: row by row it
  // was a dot product down each column of A, a cache line a multiply-add (the update of a 512×1
  // W at batch 256 took 366 µs). Its blocks of rows start at fixed multiples of block_elements,
  // whatever the thread count, so each sum runs in the same vector or tail loop every time.
  const bool column_of_a_transposed = n == 1 && a.rs == 1 && a.cs != 1;
  const std::ptrdiff_t block_rows =
      column_of_a_transposed ? block_elements : std::max<std::ptrdiff_t>(1, block_elements / n);
  const std::ptrdiff_t blocks = (m + block_rows - 1) / block_rows;
  return largest_on_threads(threads_for(double(m) * n * k), [&](std::ptrdiff_t team,
                                                                std::ptrdiff_t me, double& largest) {
    thread_local Buffer<T> rows_buffer;
    T* rows = reserve(rows_buffer, static_cast<std::size_t>(std::min(block_rows, m) * n));
    for (std::ptrdiff_t block = blocks * me / team; block < blocks * (me + 1) / team; ++block) {
      const std::ptrdiff_t i0 = block * block_rows, count = std::min(block_rows, m - i0);
      if (column_of_a_transposed)
        loops.unpacked_row(0, count, k, kc, MatrixView<T>{b.data, b.cs, b.rs},
                           MatrixView<T>{a.data + i0, a.cs, 1}, rows);
      else
        for (std::ptrdiff_t r = 0; r < count; ++r)
          loops.unpacked_row(i0 + r, n, k, kc, a, b, rows + r * n);
      largest = larger_magnitude(largest, loops.finish_tile(ep, n, i0, 0, count, n, rows, n, c, ldc));
    }
  });
}

// dst(r, j) = src(r, j) for the rows×cols block: moves partial sums of a tile at C's edge.
template <typename T>
void copy_block(const T* src, std::ptrdiff_t ld_src, T* dst, std::ptrdiff_t ld_dst,
                std::ptrdiff_t rows, std::ptrdiff_t cols) {
  for (std::ptrdiff_t r = 0; r < rows; ++r)
    copy_row(src + r * ld_src, dst + r * ld_dst, std::size_t(cols));
}

// One thread's share: the BLIS loops over the block C(i_begin..i_end, j_begin..j_end), with packed
// panels in the thread's own buffers (allocated on its first GEMM of this size, then reused).
// `team` threads share the product. Returns what the epilogues measured.
template <typename T>
double gemm_block(const KernelTable<T>& kt, const ElementLoops<T>& loops, std::ptrdiff_t m,
                  std::ptrdiff_t n, std::ptrdiff_t k, std::ptrdiff_t i_begin, std::ptrdiff_t i_end,
                  std::ptrdiff_t j_begin, std::ptrdiff_t j_end, MatrixView<T> a, MatrixView<T> b,
                  T* c, std::ptrdiff_t ldc, const Epilogue<T>& ep, std::ptrdiff_t team) {
  const int mr = kt.mr, nr = kt.nr;
  const std::ptrdiff_t kc_max = kt.kc, mc_max = kt.mc, nc_max = kt.nc;
  thread_local Buffer<T> packed_a_buffer, packed_b_buffer;
  const std::ptrdiff_t kc_cap = std::min(k, deepest_block(kc_max));
  const std::ptrdiff_t block_rows = i_end - i_begin;
  T* packed_a = reserve(packed_a_buffer, static_cast<std::size_t>(
                                             (std::min(block_rows, mc_max) + mr - 1) / mr * mr * kc_cap));
  T* packed_b = reserve(packed_b_buffer, static_cast<std::size_t>(
                                             (std::min(j_end - j_begin, nc_max) + nr - 1) / nr * nr * kc_cap));
  const bool a_in_place = reads_a_in_place(a, j_end - j_begin);
  // Row blocks of mc_max rows; where A is packed, the last two share what is left in whole
  // panels: 256 rows were a block of 240 and one of 16, and a packed block that short brings
  // each B panel from L3 for three tiles (256×1024 · 1024×2048 at 2 threads: +12%, wide-shaped
  // fits +4-9%). Blocks all of one height (~170 rows a thread for 1024²) were slower than 240s
  // with a short last one, and an A read in place has no block to fill: MNIST-shaped fits, whose
  // As all are, were no faster for it (0.97, 3 of 10).
  const std::ptrdiff_t last_two_from = a_in_place || block_rows <= mc_max
                                           ? block_rows
                                           : (block_rows - mc_max - 1) / mc_max * mc_max;
  const std::ptrdiff_t last_two_mc = ((block_rows - last_two_from + 1) / 2 + mr - 1) / mr * mr;
  // Few rows of C use each B panel too few times to repay copying it, and a small row-major B
  // stays in L1/L2 where the microkernel reads it: its whole panels are then read in place
  // (edge panels are still packed, zero-padded). A large B read in place would miss the caches
  // on every row of every tile. So would a deep panel: its kc rows, at B's row stride, fall in a
  // few of L1's sets, and from 16 KB on they no longer stay there from one tile to the next
  // (the MNIST-shaped 128×256 · 256×128 at 2 threads, 64 rows each: 42 → 38 µs packed). The
  // microkernel tells a packed panel by its row length NR, so a B exactly NR wide is packed.
  constexpr std::ptrdiff_t b_in_place_up_to_rows = 64, b_in_place_up_to_elements = 65536,
                           b_in_place_up_to_panel_bytes = 16384;
  const bool b_in_place = b.cs == 1 && b.rs != nr && i_end - i_begin <= b_in_place_up_to_rows &&
                          k * b.rs <= b_in_place_up_to_elements &&
                          kc_cap * nr * std::ptrdiff_t(sizeof(T)) <= b_in_place_up_to_panel_bytes;
  // The parameters and moments an update rewrites are asked for a tile ahead too. A training
  // step's gradient products have k = batch <= kc, so no partial sums bring those rows in, and
  // down a column panel each row gives two lines, too few for the hardware prefetcher: the update
  // waited on every row of weights it read, and wide-shaped fits (24 MB of weights) trained 6-8%
  // faster with this. Arrays that fit in L2 are left alone: for a digits-shaped fit's the
  // requests only cost time (1.7%), for an MNIST-shaped one's 1.8% at 1 thread. A team also
  // asks for parameters that another product reads across its split, whatever their size: the
  // other core then holds their lines (prefetch_block_to_write). The MNIST-shaped fit at 2
  // threads (W_2 and W_3, read by the delta products) ran +0.65%, its Adam variant +0.5% (3 of
  // 4 each); asking for every layer's parameters too, +1.8% more with SGD but 1.7% less with
  // Adam. (Through a helper function GCC merged the loop with the one for partial sums, and the
  // gain vanished.)
  constexpr std::ptrdiff_t prefetch_update_from_bytes = 1 << 20;
  const bool update_is_large = m * n * std::ptrdiff_t(sizeof(T)) >= prefetch_update_from_bytes;
  const bool prefetch_parameters =
      ep.kind == EpilogueKind::optimizer && ((team > 1 && ep.param_read_across) || update_is_large);
  const bool prefetch_moments = ep.kind == EpilogueKind::optimizer && update_is_large;
  // Where the epilogue would only copy the products, a tile's final sums go straight into C
  // (part rows at C's last column) and the epilogue runs on them there (a measure, or nothing):
  // the copy through `tile` took ~4% of 32×64 · 64×128 alone.
  const bool products_are_output =
      ep.kind == EpilogueKind::store ||
      (ep.kind == EpilogueKind::bias_activation && !ep.bias &&
       (ep.activation == Activation::identity || ep.activation == Activation::softmax));
  // A thread's tile buffer, zero when the thread first runs here and not zeroed again: zeroing
  // 1 KB a call cost 6% of a 4-16-3 network's training at batch 4. The epilogue and the copies
  // to C read only a tile's rows × columns; the lanes past C's last column, zero in a kernel's
  // own output (B's panels are zero-padded), may hold an earlier tile's sums where a kernel adds
  // partial sums to them, and go nowhere.
  alignas(64) static thread_local T tile[max_tile];
  double largest = 0;
  for (std::ptrdiff_t jc = j_begin; jc < j_end; jc += nc_max) {
    const std::ptrdiff_t nc = std::min(nc_max, j_end - jc);
    const std::ptrdiff_t n_panels = (nc + nr - 1) / nr;
    auto panel_in_place = [&](std::ptrdiff_t jr) { return b_in_place && nc - jr * nr >= nr; };
    for (std::ptrdiff_t pc = 0, kc = 0; pc < k; pc += kc) {
      kc = depth_block(k, pc, kc_max);
      const bool first = pc == 0, last = pc + kc == k;
      if (!b_in_place)
        loops.pack_b(b, pc, jc, kc, nc, nr, packed_b);
      else if (nc % nr)  // the edge panel only
        loops.pack_b(b, pc, jc + nc / nr * nr, kc, nc % nr, nr, packed_b + nc / nr * nr * kc);
      for (std::ptrdiff_t ic = i_begin, mc; ic < i_end; ic += mc) {
        mc = std::min(ic - i_begin < last_two_from ? mc_max : last_two_mc, i_end - ic);
        const std::ptrdiff_t m_panels = (mc + mr - 1) / mr;
        // Below pack_a_from_columns A is read in place, by rows or by columns: packing a
        // row-major A would be a transposing copy as slow as a third of the products (skinny
        // shapes), and even the straight copy of Aᵀ's columns cost 7% of a digits-shaped step.
        // From there on packing pays: a wide-shaped fit (1024-2048-2048-10) trained 1.4× faster
        // at 1 thread and 1.1× at 2, MNIST-shaped ones alike (interleaved runs, Intel Xeon;
        // 1.2× on its AVX2 path).
        if (!a_in_place) loops.pack_a(a, ic, pc, mc, kc, mr, packed_a);
        const std::ptrdiff_t a_rs = a_in_place ? a.rs : 1, a_cs = a_in_place ? a.cs : mr;
        const std::ptrdiff_t a_step = a_in_place ? mr * a.rs : mr * kc;  // from panel to panel
        const T* a_first = a_in_place ? &a(ic, pc) : packed_a;
        // jr outer, ir inner: consecutive tiles reuse one B panel from L1.
        for (std::ptrdiff_t jr = 0; jr < n_panels; ++jr) {
          const bool b_read_in_place = panel_in_place(jr);
          const T* b_panel = b_read_in_place ? &b(pc, jc + jr * nr) : packed_b + jr * nr * kc;
          const std::ptrdiff_t b_rs = b_read_in_place ? b.rs : nr;
          const std::ptrdiff_t j0 = jc + jr * nr;
          const std::ptrdiff_t cols = std::min<std::ptrdiff_t>(nr, j_end - j0);
          const bool whole = cols == nr;
          std::ptrdiff_t ir = 0;
          // A column's full-height tiles run in one call where their sums go straight into C
          // and no epilogue follows but a measure of them, which the kernel then takes (at C's
          // last column too: the kernel then reads and writes part rows).
          const std::ptrdiff_t full = mc / mr;
          if (full > 0 && (!last || products_are_output)) {
            T* c_top = c + ic * ldc + j0;
            if (!first) prefetch_block(c_top, ldc, mr, cols);
            const bool measure = last && ep.kind == EpilogueKind::bias_activation &&
                                 ep.measure != Measure::nothing;
            const T sums = kt.column(static_cast<int>(kc), static_cast<int>(full), a_first, a_rs,
                                     a_cs, a_step, b_panel, b_rs, first ? nullptr : c_top, ldc,
                                     c_top, ldc, measure, static_cast<int>(cols));
            largest = larger_magnitude(largest, double(sums));
            ir = full;
          }
          for (; ir < m_panels; ++ir) {
            const T* a_panel = a_first + ir * a_step;
            const std::ptrdiff_t i0 = ic + ir * mr;
            const std::ptrdiff_t rows = std::min<std::ptrdiff_t>(mr, i_end - i0);
            // Partial sums of earlier k-blocks wait in C. A tile that overhangs C's last column
            // is staged in `tile` instead, and the last block's sums always land in `tile`,
            // where the epilogue reads them. A tile short of rows at C's last rows runs the
            // kernel of its rows, which reads and writes no row past C's last (so an A read in
            // place needs no zero-padded copy).
            T* c_tile = c + i0 * ldc + j0;
            const auto kernel = rows == mr ? kt.gemm : kt.edge[rows];
            // The next tile, below this one or atop the next column panel, where it has
            // partial sums or parameters to ask for.
            if (!first || (last && prefetch_parameters)) {
              const bool column_done = ir + 1 == m_panels;
              const std::ptrdiff_t next_i = column_done ? ic : i0 + mr, next_j = column_done ? j0 + nr : j0;
              if (next_j < j_end) {
                const std::ptrdiff_t next_rows = std::min<std::ptrdiff_t>(mr, i_end - next_i),
                                     next_cols = std::min<std::ptrdiff_t>(nr, j_end - next_j);
                if (!first) prefetch_block(c + next_i * ldc + next_j, ldc, next_rows, next_cols);
                if (last && prefetch_parameters)
                  for (T* array : {ep.param, prefetch_moments ? ep.m : nullptr,
                                   prefetch_moments ? ep.v : nullptr})
                    if (array)
                      prefetch_block_to_write(array + next_i * n + next_j, n, next_rows, next_cols);
              }
            }
            if (!first && !whole) copy_block(c_tile, ldc, tile, nr, rows, cols);
            const T* partial = first ? nullptr : whole ? c_tile : tile;
            const std::ptrdiff_t ld_partial = whole ? ldc : nr;
            if (last && whole && products_are_output) {
              kernel(static_cast<int>(kc), a_panel, a_rs, a_cs, b_panel, b_rs, partial, ldc, c_tile, ldc);
              largest = larger_magnitude(largest, loops.finish_tile(ep, n, i0, j0, rows, cols, c_tile, ldc, c, ldc));
            } else if (last) {
              kernel(static_cast<int>(kc), a_panel, a_rs, a_cs, b_panel, b_rs, partial, ld_partial, tile, nr);
              largest = larger_magnitude(largest, loops.finish_tile(ep, n, i0, j0, rows, cols, tile, nr, c, ldc));
            } else if (whole) {
              kernel(static_cast<int>(kc), a_panel, a_rs, a_cs, b_panel, b_rs, partial, ldc, c_tile, ldc);
            } else {
              kernel(static_cast<int>(kc), a_panel, a_rs, a_cs, b_panel, b_rs, partial, nr, tile, nr);
              copy_block(tile, nr, c_tile, ldc, rows, cols);
            }
          }
        }
      }
    }
  }
  return largest;
}

template <typename T>
void finish_columns(const Epilogue<T>& ep, std::ptrdiff_t j_begin, std::ptrdiff_t j_end) {
  if (ep.columns_done && j_begin < j_end) ep.columns_done(ep.columns_context, j_begin, j_end);
}

// Whether threads should split C by column panels (each then packs all of A) rather than by row
// panels (each then packs all of B). Prefer the split that copies less, as long as it gives every
// thread at least four panels (shares within 25%); pack_cost_* weighs a transposing copy ~4× a
// straight one, and an A read in place costs nothing. pack_cost_a is what A costs a thread under
// a column split: its block is then a thread's share of the columns.
inline bool prefer_column_split(std::ptrdiff_t m_panels, std::ptrdiff_t n_panels, int threads,
                                double pack_cost_a, double pack_cost_b) {
  const bool columns_balance = n_panels >= 4 * threads, rows_balance = m_panels >= 4 * threads;
  if (columns_balance != rows_balance) return columns_balance;
  if (!columns_balance) return n_panels >= m_panels;
  return pack_cost_a <= pack_cost_b;
}

// Threads take disjoint blocks of C — whole NR-wide column panels or whole MR-tall row panels —
// and run the full loop nest on their own, packing what they need. Packing one operand on every
// thread costs less than sharing packed panels, which needed three barriers per k-block, and on a
// loaded machine each barrier can wait a scheduler slice.
//
// Where each thread's columns would read A in place (the training shapes), the column panels go
// in chunks: each thread takes its own range's chunks, then claims what is left of the other's
// (ChunkClaims). A chunk packs only its own columns of B, and A is read once per column panel
// however they are grouped, so the chunks cost nothing, while on a shared machine one core often
// runs slower than the other for a while: an MNIST-shaped fit at 2 threads had the calling thread
// waiting at the joins 20% of its time for the other thread's equal shares, 6% with chunks
// (AMD EPYC). A tile's sum is the same whichever thread runs it. One thread runs all columns as
// one block: the claims, with their allocation, cost a digits-shaped fit (whose GEMMs all run on
// one thread) 5%.
constexpr std::ptrdiff_t column_chunks_per_thread = 4;

template <typename T>
double gemm_packed(std::ptrdiff_t m, std::ptrdiff_t n, std::ptrdiff_t k, MatrixView<T> a,
                   MatrixView<T> b, T* c, std::ptrdiff_t ldc, const Epilogue<T>& ep,
                   double team_work) {
  const KernelTable<T>& kt = gemm_kernel<T>(n);
  const ElementLoops<T> loops = element_loops<T>();
  const std::ptrdiff_t n_panels = (n + kt.nr - 1) / kt.nr, m_panels = (m + kt.mr - 1) / kt.mr;
  const int threads = threads_for(std::max(double(m) * n * k, team_work));
  // Under a column split a thread whose share is pack_a_from_columns wide packs all of A, not
  // nothing: 1024² at 2 threads, split by rows instead, ran 2-5% faster (29 of 36 rounds).
  const std::ptrdiff_t share_columns = (n_panels + threads - 1) / threads * kt.nr;
  const bool share_reads_a_in_place = reads_a_in_place(a, share_columns);
  const double pack_cost_a = share_reads_a_in_place ? 0.0 : (a.rs == 1 ? 1.0 : 4.0) * double(m) * k;
  const bool split_columns = prefer_column_split(m_panels, n_panels, threads, pack_cost_a,
                                                 double(k) * n * (b.cs == 1 ? 1 : 4));
  if (split_columns && share_reads_a_in_place && threads > 1) {
    const std::ptrdiff_t chunks = std::min<std::ptrdiff_t>(n_panels, column_chunks_per_thread * threads);
    ChunkClaims claims(chunks, threads);
    return largest_on_threads(threads, [&](std::ptrdiff_t team, std::ptrdiff_t me,
                                           double& largest) {
      for (std::ptrdiff_t chunk; (chunk = claims.next(me)) >= 0;) {
        const std::ptrdiff_t begin = n_panels * chunk / chunks, end = n_panels * (chunk + 1) / chunks;
        const std::ptrdiff_t j_begin = begin * kt.nr, j_end = std::min(n, end * kt.nr);
        largest = larger_magnitude(largest, gemm_block(kt, loops, m, n, k, 0, m, j_begin, j_end,
                                                       a, b, c, ldc, ep, team));
        finish_columns(ep, j_begin, j_end);
      }
    });
  }
  return largest_on_threads(threads, [&](std::ptrdiff_t team, std::ptrdiff_t me, double& largest) {
    const std::ptrdiff_t panels = split_columns ? n_panels : m_panels;
    const std::ptrdiff_t begin = panels * me / team, end = panels * (me + 1) / team;
    if (!split_columns && me == 0) finish_columns(ep, 0, n);
    if (begin >= end) return;
    if (split_columns) {
      const std::ptrdiff_t j_begin = begin * kt.nr, j_end = std::min(n, end * kt.nr);
      largest = gemm_block(kt, loops, m, n, k, 0, m, j_begin, j_end, a, b, c, ldc, ep, team);
      finish_columns(ep, j_begin, j_end);
    } else {
      largest = gemm_block(kt, loops, m, n, k, begin * kt.mr, std::min(m, end * kt.mr), 0, n, a,
                           b, c, ldc, ep, team);
    }
  });
}

// A product of one row, one column or depth 1 runs unpacked; otherwise packing pays from ~128
// multiply-adds on, even for a few rows, columns and k: at batch 4 a 4-16-3 network trained
// 1.16× faster with its 192-multiply-add products packed, and at batch 16 a 3-5-2 one 1.14×,
// while a 4-8-3 at batch 2 (products of 48-64) trained 1.35× faster unpacked. (The limit was
// 4096, from when the unpacked loops summed in memory.)
bool runs_unpacked(std::ptrdiff_t m, std::ptrdiff_t n, std::ptrdiff_t k) {
  return m == 1 || n == 1 || k == 1 || double(m) * n * k < 128.0;
}

}  // namespace

template <typename T>
double gemm(std::ptrdiff_t m, std::ptrdiff_t n, std::ptrdiff_t k, MatrixView<T> a,
            MatrixView<T> b, T* c, std::ptrdiff_t ldc, const Epilogue<T>& ep, double team_work) {
  if (n <= 0) return 0;
  if (m <= 0 || k <= 0) {  // an empty sum: the epilogue still runs on zeros
    Buffer<T> zeros(static_cast<std::size_t>(n), T(0));
    const ElementLoops<T> loops = element_loops<T>();
    double largest = 0;
    for (std::ptrdiff_t i = 0; i < m; ++i)
      largest = larger_magnitude(largest, loops.finish_tile(ep, n, i, 0, 1, n, zeros.data(), n, c, ldc));
    finish_columns(ep, 0, n);
    return largest;
  }
  if (runs_unpacked(m, n, k)) {
    const double largest = gemm_unpacked(m, n, k, a, b, c, ldc, ep);
    finish_columns(ep, 0, n);
    return largest;
  }
  return gemm_packed(m, n, k, a, b, c, ldc, ep, team_work);
}

template <typename T>
double gemm_columns(std::ptrdiff_t m, std::ptrdiff_t n, std::ptrdiff_t k, MatrixView<T> a,
                    MatrixView<T> b, T* c, std::ptrdiff_t ldc, const Epilogue<T>& ep,
                    std::ptrdiff_t j_begin, std::ptrdiff_t j_end) {
  if (m <= 0 || k <= 0 || runs_unpacked(m, n, k))
    return j_begin == 0 ? gemm(m, n, k, a, b, c, ldc, ep) : 0;
  if (j_begin >= j_end) return 0;
  // A team of two: where the other share's thread read the parameters this update rewrites
  // (param_read_across), they are asked for with the intent to write.
  const double largest = gemm_block(gemm_kernel<T>(n), element_loops<T>(), m, n, k, 0, m, j_begin,
                                    j_end, a, b, c, ldc, ep, 2);
  finish_columns(ep, j_begin, j_end);
  return largest;
}

template <typename T>
void apply_activation(const T* z, T* out, std::ptrdiff_t rows, std::ptrdiff_t cols,
                      Activation activation, T alpha) {
  Epilogue<T> ep;
  ep.kind = EpilogueKind::bias_activation;
  ep.activation = activation;
  ep.alpha = alpha;
  element_loops<T>().finish_tile(ep, cols, 0, 0, rows, cols, z, cols, out, cols);
}

template double gemm_columns<float>(std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t,
                                    MatrixView<float>, MatrixView<float>, float*, std::ptrdiff_t,
                                    const Epilogue<float>&, std::ptrdiff_t, std::ptrdiff_t);
template double gemm_columns<double>(std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t,
                                     MatrixView<double>, MatrixView<double>, double*,
                                     std::ptrdiff_t, const Epilogue<double>&, std::ptrdiff_t,
                                     std::ptrdiff_t);
template void apply_activation<float>(const float*, float*, std::ptrdiff_t, std::ptrdiff_t,
                                      Activation, float);
template void apply_activation<double>(const double*, double*, std::ptrdiff_t, std::ptrdiff_t,
                                       Activation, double);
template double gemm<float>(std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t, MatrixView<float>,
                            MatrixView<float>, float*, std::ptrdiff_t, const Epilogue<float>&,
                            double);
template double gemm<double>(std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t, MatrixView<double>,
                             MatrixView<double>, double*, std::ptrdiff_t, const Epilogue<double>&,
                             double);

}  // namespace deltaprop
