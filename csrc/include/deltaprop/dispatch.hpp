// Runtime ISA dispatch: CPU features -> one kernel table per type, chosen once at import.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "deltaprop/kernels.hpp"

namespace deltaprop {

// The kernel table in use for T, for a product `columns` wide. A C narrower than the AVX-512 tile
// (10 classes) gets the AVX2 tile on an AVX-512 machine: 62% of its lanes do useful work instead
// of 31%, at the same peak on a CPU that splits 512-bit operations in two, and no worse elsewhere.
template <typename T>
const KernelTable<T>& gemm_kernel(std::ptrdiff_t columns = PTRDIFF_MAX);

// "generic", "avx2", "avx512": the ISA in use, the ones this CPU runs, and a switch between
// them. DELTAPROP_ISA picks one at import (like BLIS_ARCH_TYPE); tests call select_isa to
// cross-check every path the machine has. Not meant to be called while kernels run.
std::string isa_in_use();
// The ISA in use as a number: an inline load, cheap enough to ask for every row an online step
// activates or updates (as an out-of-line call it also cost every vector register the caller
// held).
enum class Isa : int { generic, avx2, avx512 };
namespace detail {
extern std::atomic<int> isa_in_use;
}
inline Isa current_isa() {
  return static_cast<Isa>(detail::isa_in_use.load(std::memory_order_relaxed));
}
std::vector<std::string> supported_isas();
void select_isa(const std::string& name);
void select_isa_from_environment();

}  // namespace deltaprop
