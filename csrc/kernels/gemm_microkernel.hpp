// The register-tile microkernel, written once with GCC vector extensions and instantiated by
// each kernel file under that file's ISA flags (-mavx2 -mfma, -mavx512f, or the baseline), so the
// compiler emits broadcast + FMA sequences of the right width for each.
//
// Each iteration of p loads one NR-wide row of the packed B panel into NV vectors, broadcasts
// MR elements of the packed A column, and does MR·NV fused multiply-adds into accumulators that
// stay in registers for the whole kc loop. MR·NV + NV + 1 must fit the register file
// (6·2 + 2 + 1 = 15 of 16 ymm for 6×16 f32 AVX2).
//
// This header is included only by kernel files and uses no standard-library code, so no inline
// function compiled with wide-ISA flags can be merged into the baseline parts of the module.
#pragma once

#include <cstddef>  // std::ptrdiff_t only: a typedef, no code

namespace deltaprop {
namespace {

// acc += a_column · b_row for one p: NV vector loads of the B row, MR broadcasts of A's column
// (a_column[i * stride]), MR·NV fused multiply-adds. A packed B row is 64-byte aligned; one read
// in place may have any alignment, and is loaded by memcpy (an alignment attribute on a
// vector typedef is lost when the typedef is a template argument).
template <typename T, typename V, int MR, int NV, int W, bool b_aligned>
__attribute__((always_inline)) inline void rank1_update(V (&acc)[MR][NV], const T* b_row,
                                                        const T* a_column, std::ptrdiff_t stride) {
  V bv[NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) {
    if (b_aligned)
      bv[v] = *reinterpret_cast<const V*>(b_row + v * W);
    else
      __builtin_memcpy(&bv[v], b_row + v * W, sizeof(V));
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    // x - 0 is x for every x (x + 0 is not, for x = -0), so this folds to one broadcast.
    const V ai = a_column[i * stride] - V{};
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[i][v] += ai * bv[v];
  }
}

// The first `lanes` lanes of a vector of C's row (0 <= lanes <= the vector's), read (the rest
// zero) or written without touching the lanes past them, so that a tile overhanging C's last
// column goes straight into C. Staged in a buffer and copied out row by row instead, such tiles
// cost 8% of 128×128 · 128×10 alone on AVX-512, ~15% on AVX2. AVX-512 has masked moves, which
// do not fault past the lanes either; narrower vectors move in halving pieces (8 + 2 floats for
// a 10-wide row on AVX2), each within the vector, so no load spans two of the kernel's stores.
template <typename V, typename T>
__attribute__((always_inline)) inline V load_first_lanes(const T* p, int lanes) {
  constexpr int W = int(sizeof(V) / sizeof(T));
  if constexpr (sizeof(V) == 64) {
    if constexpr (sizeof(T) == 4)
      return __builtin_ia32_loadups512_mask(p, V{}, (unsigned short)((1u << lanes) - 1));
    else
      return __builtin_ia32_loadupd512_mask(p, V{}, (unsigned char)((1u << lanes) - 1));
  } else {
    V v{};
    if (lanes >= W) {
      __builtin_memcpy(&v, p, sizeof v);
    } else if constexpr (W > 1) {
      typedef T H __attribute__((vector_size(sizeof(V) / 2)));
      const H low = load_first_lanes<H>(p, lanes < W / 2 ? lanes : W / 2);
      const H high = lanes > W / 2 ? load_first_lanes<H>(p + W / 2, lanes - W / 2) : H{};
      __builtin_memcpy(&v, &low, sizeof low);
      __builtin_memcpy(reinterpret_cast<char*>(&v) + sizeof low, &high, sizeof high);
    }
    return v;
  }
}

template <typename V, typename T>
__attribute__((always_inline)) inline void store_first_lanes(T* p, V v, int lanes) {
  constexpr int W = int(sizeof(V) / sizeof(T));
  if constexpr (sizeof(V) == 64) {
    if constexpr (sizeof(T) == 4)
      __builtin_ia32_storeups512_mask(p, v, (unsigned short)((1u << lanes) - 1));
    else
      __builtin_ia32_storeupd512_mask(p, v, (unsigned char)((1u << lanes) - 1));
  } else if (lanes >= W) {
    __builtin_memcpy(p, &v, sizeof v);
  } else if constexpr (W > 1) {
    typedef T H __attribute__((vector_size(sizeof(V) / 2)));
    H low, high;
    __builtin_memcpy(&low, &v, sizeof low);
    __builtin_memcpy(&high, reinterpret_cast<const char*>(&v) + sizeof low, sizeof high);
    if (lanes >= W / 2) {
      __builtin_memcpy(p, &low, sizeof low);
      store_first_lanes(p + W / 2, high, lanes - W / 2);
    } else {
      store_first_lanes(p, low, lanes);
    }
  }
}

// The lanes of vector v of a row that lie in its first `cols` columns.
template <int W>
constexpr int lanes_within(int cols, int v) {
  return cols - v * W < 0 ? 0 : cols - v * W > W ? W : cols - v * W;
}

// The integers whose order, with the sign bit cleared, is the order of T's magnitudes (infinity
// above every finite value, NaN above infinity): magnitude.hpp's measure, which kernel files
// cannot include.
template <typename T>
struct BitsOf;
template <>
struct BitsOf<float> {
  typedef __INT32_TYPE__ type;
};
template <>
struct BitsOf<double> {
  typedef __INT64_TYPE__ type;
};

// Magnitudes as such integers, a vector of them, and the mask that clears the sign bit.
template <typename T, int VBYTES>
struct Magnitudes {
  typedef typename BitsOf<T>::type Bits;
  typedef Bits Vector __attribute__((vector_size(VBYTES)));
  static constexpr Bits mask = Bits(~(1ull << (8 * sizeof(Bits) - 1)));
};

// A(i, p) = a[i*a_rs + p*a_cs], with a_rs == 1 (a packed MR-major panel, a_cs = MR, or columns
// of a transposed matrix read in place) or a_cs == 1 (MR rows of a row-major matrix read in
// place: MR contiguous streams). B(p, j) = b[p*b_rs + j]: a packed panel (b_rs = NR, 64-byte
// aligned) or NR columns of a row-major matrix read in place. `narrow`: C's rows are read and
// written in their first `cols` columns only (load_first_lanes). Where `largest` is given, the
// magnitudes of the sums in those columns raise it, lane by lane, from the registers: read back
// from C, the part rows of a narrow tile cost AVX2 22% of 128×128 · 128×10.
template <typename T, int MR, int NR, int VBYTES, bool narrow = false>
inline void gemm_microkernel(int kc, const T* __restrict a, std::ptrdiff_t a_rs,
                             std::ptrdiff_t a_cs, const T* __restrict b, std::ptrdiff_t b_rs,
                             const T* c_in, std::ptrdiff_t ldc_in, T* c_out,
                             std::ptrdiff_t ldc_out, int cols = NR,
                             typename Magnitudes<T, VBYTES>::Vector* largest = nullptr) {
  typedef T V __attribute__((vector_size(VBYTES), aligned(VBYTES)));
  typedef T U __attribute__((vector_size(VBYTES), aligned(sizeof(T))));  // rows of C: unaligned
  constexpr int W = VBYTES / int(sizeof(T));
  constexpr int NV = NR / W;
  static_assert(NR % W == 0, "NR must be a whole number of vectors");

  V acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[i][v] = V{};

  // Four loops, so that each knows its strides: a packed panel's at compile time. Each is
  // unrolled four times: rolled, the step's pointer increments and test were 4 of its 24
  // instructions; unrolled, the offsets fold into the loads' addresses (one thread, paired
  // rounds: 2048² +1.5%, 256×2048 · 2048×2048 +0.9%, MNIST-shaped fit +1.4%, digits-shaped
  // +1.1%, all 6 of 6; unrolled twice or eight times, 0.98–0.99 of four).
  if (b_rs == NR) {
    const T* packed = static_cast<const T*>(__builtin_assume_aligned(b, 64));
    if (a_rs == 1) {
#pragma GCC unroll 4
      for (int p = 0; p < kc; ++p)
        rank1_update<T, V, MR, NV, W, true>(acc, packed + p * NR, a + p * a_cs, 1);
    } else {
#pragma GCC unroll 4
      for (int p = 0; p < kc; ++p)
        rank1_update<T, V, MR, NV, W, true>(acc, packed + p * NR, a + p, a_rs);
    }
  } else if (a_rs == 1) {
#pragma GCC unroll 4
    for (int p = 0; p < kc; ++p)
      rank1_update<T, V, MR, NV, W, false>(acc, b + p * b_rs, a + p * a_cs, 1);
  } else {
#pragma GCC unroll 4
    for (int p = 0; p < kc; ++p)
      rank1_update<T, V, MR, NV, W, false>(acc, b + p * b_rs, a + p, a_rs);
  }

  // The partial sums of earlier k-blocks are added once the block's own sum is done, read and
  // written by full-width vector loads and stores, not by a pass of their own. Loaded before the
  // loop, as they once were, they waited on the previous tile's stores: C's rows lie a multiple
  // of 4 KiB apart in a 1024- or 2048-wide C, so each load matched a pending store's address in
  // the bits the core compares first and was held until that store was done. That cost 7% of the
  // kernel's time over a 2048-wide C (a harness of 6×16 tiles at kc = 256); after the loop the
  // stores are long done, and prefetched partial sums have arrived. (All loads come before the
  // first store, for the same reason: a row's store would hold up the next row's load.)
  if (c_in)
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        const T* row = c_in + i * ldc_in + v * W;
        if constexpr (narrow)
          acc[i][v] += load_first_lanes<V>(row, lanes_within<W>(cols, v));
        else
          acc[i][v] += V(*reinterpret_cast<const U*>(row));
      }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      T* row = c_out + i * ldc_out + v * W;
      if constexpr (narrow)
        store_first_lanes(row, acc[i][v], lanes_within<W>(cols, v));
      else
        *reinterpret_cast<U*>(row) = acc[i][v];
    }
  if (largest) {
    typedef Magnitudes<T, VBYTES> M;
    typename M::Vector within[NV];  // all bits set in the lanes within C's columns
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      typename M::Vector lane;
      for (int l = 0; l < W; ++l) lane[l] = l;
      within[v] = lane < lanes_within<W>(cols, v);
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        typename M::Vector bits;
        __builtin_memcpy(&bits, &acc[i][v], sizeof bits);
        bits &= M::mask & within[v];
        *largest = bits > *largest ? bits : *largest;
      }
  }
}

// Full tiles down a column panel in one call (the `column` slot, kernels.hpp): a call and the
// loop logic around it for each tile cost 2.6% of 256×2048 · 2048×2048 at 1 thread. Each tile
// asks for the next one's partial sums first, so that they arrive while it runs. Where asked
// to `measure`, the largest magnitude of the tiles' sums is returned, taken from the registers
// by the microkernel (an epilogue call per tile did that for `forward_layer`).
template <typename T, int MR, int NR, int VBYTES, bool narrow>
T column_tiles(int kc, int tiles, const T* a, std::ptrdiff_t a_rs, std::ptrdiff_t a_cs,
               std::ptrdiff_t a_step, const T* b, std::ptrdiff_t b_rs, const T* c_in,
               std::ptrdiff_t ldc_in, T* c_out, std::ptrdiff_t ldc_out, bool measure, int cols) {
  typedef Magnitudes<T, VBYTES> M;
  constexpr int lanes = VBYTES / int(sizeof(T));
  typename M::Vector largest{};
  for (int t = 0; t < tiles; ++t) {
    const T* partial = c_in ? c_in + t * MR * ldc_in : nullptr;
    if (partial && t + 1 < tiles) prefetch_block(partial + MR * ldc_in, ldc_in, MR, cols);
    gemm_microkernel<T, MR, NR, VBYTES, narrow>(kc, a + t * a_step, a_rs, a_cs, b, b_rs, partial,
                                                ldc_in, c_out + t * MR * ldc_out, ldc_out, cols,
                                                measure ? &largest : nullptr);
  }
  typename M::Bits most = 0;
  for (int lane = 0; lane < lanes; ++lane) most = largest[lane] > most ? largest[lane] : most;
  T value;
  __builtin_memcpy(&value, &most, sizeof value);
  return value;
}

// The `column` slot: whole tiles, or tiles `cols` < NR wide at C's last column.
template <typename T, int MR, int NR, int VBYTES>
T column_kernel(int kc, int tiles, const T* a, std::ptrdiff_t a_rs, std::ptrdiff_t a_cs,
                std::ptrdiff_t a_step, const T* b, std::ptrdiff_t b_rs, const T* c_in,
                std::ptrdiff_t ldc_in, T* c_out, std::ptrdiff_t ldc_out, bool measure, int cols) {
  if (cols < NR)
    return column_tiles<T, MR, NR, VBYTES, true>(kc, tiles, a, a_rs, a_cs, a_step, b, b_rs, c_in,
                                                 ldc_in, c_out, ldc_out, measure, cols);
  return column_tiles<T, MR, NR, VBYTES, false>(kc, tiles, a, a_rs, a_cs, a_step, b, b_rs, c_in,
                                                ldc_in, c_out, ldc_out, measure, NR);
}

// The microkernel of a tile of R rows, as a kernel slot (kernels.hpp).
template <typename T, int R, int NR, int VBYTES>
void rows_kernel(int kc, const T* a, std::ptrdiff_t a_rs, std::ptrdiff_t a_cs, const T* b,
                 std::ptrdiff_t b_rs, const T* c_in, std::ptrdiff_t ldc_in, T* c_out,
                 std::ptrdiff_t ldc_out) {
  gemm_microkernel<T, R, NR, VBYTES>(kc, a, a_rs, a_cs, b, b_rs, c_in, ldc_in, c_out, ldc_out);
}

// The kernel slot of a tile of R rows beside MR-row tiles: none from MR rows on.
template <typename T, int R, int MR, int NR, int VBYTES>
constexpr typename KernelTable<T>::Kernel edge_kernel() {
  if constexpr (R < MR) return rows_kernel<T, R, NR, VBYTES>;
  return nullptr;
}

// An MR×NR table: the full tile's kernel and one for each shorter tile at C's last rows.
template <typename T, int MR, int NR, int VBYTES>
constexpr KernelTable<T> kernel_table(int kc, int mc, int nc, const char* isa) {
  static_assert(MR <= 8, "edge kernels are kept for tiles of up to eight rows");
  return {rows_kernel<T, MR, NR, VBYTES>, column_kernel<T, MR, NR, VBYTES>, MR, NR, kc, mc, nc, isa,
          {nullptr, edge_kernel<T, 1, MR, NR, VBYTES>(), edge_kernel<T, 2, MR, NR, VBYTES>(),
           edge_kernel<T, 3, MR, NR, VBYTES>(), edge_kernel<T, 4, MR, NR, VBYTES>(),
           edge_kernel<T, 5, MR, NR, VBYTES>(), edge_kernel<T, 6, MR, NR, VBYTES>(),
           edge_kernel<T, 7, MR, NR, VBYTES>()}};
}

}  // namespace
}  // namespace deltaprop
