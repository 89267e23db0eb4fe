// Runtime ISA dispatch: CPU features -> one kernel table per type, chosen once at import.
#pragma once

#include <string>
#include <vector>

#include "deltaprop/kernels.hpp"

namespace deltaprop {

// The kernel table in use for T.
template <typename T>
const KernelTable<T>& gemm_kernel();

// "generic", "avx2", "avx512": the ISA in use, the ones this CPU runs, and a switch between
// them. DELTAPROP_ISA picks one at import (like BLIS_ARCH_TYPE); tests call select_isa to
// cross-check every path the machine has. Not meant to be called while kernels run.
std::string isa_in_use();
// The ISA in use as a number, cheap enough to ask on every step.
enum class Isa : int { generic, avx2, avx512 };
Isa current_isa();
std::vector<std::string> supported_isas();
void select_isa(const std::string& name);
void select_isa_from_environment();

}  // namespace deltaprop
