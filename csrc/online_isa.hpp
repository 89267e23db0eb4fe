// One compiled copy of an online step per ISA. `flatten` inlines the whole body, and with it
// every loop, into a function compiled for that target, without a wide-ISA copy of any shared
// inline function that the linker could hand to baseline code. Included by online.cpp and
// online_tiny.cpp, each instantiating it for its own step.
#pragma once

#include "deltaprop/dispatch.hpp"
#include "deltaprop/network.hpp"

namespace deltaprop {

template <typename T>
using OnlineBody = double (Network<T>::*)(const T*, const T*, OptimizerStep<T>);

template <typename T, OnlineBody<T> body>
double online_generic(Network<T>& net, const T* x, const T* t, const OptimizerStep<T>& opt) {
  return (net.*body)(x, t, opt);
}

#if DELTAPROP_X86
template <typename T, OnlineBody<T> body>
__attribute__((target("avx2,fma"), flatten)) double online_avx2(
    Network<T>& net, const T* x, const T* t, const OptimizerStep<T>& opt) {
  return (net.*body)(x, t, opt);
}

template <typename T, OnlineBody<T> body>
__attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma"), flatten)) double online_avx512(
    Network<T>& net, const T* x, const T* t, const OptimizerStep<T>& opt) {
  return (net.*body)(x, t, opt);
}
#endif

// `body` through the copy for the ISA in use, or for `widest` where that is narrower.
template <typename T, OnlineBody<T> body, Isa widest = Isa::avx512>
double online_for_isa(Network<T>& net, const T* x, const T* t, const OptimizerStep<T>& opt) {
#if DELTAPROP_X86
  switch (current_isa()) {
    case Isa::avx512:
      if constexpr (widest == Isa::avx512) return online_avx512<T, body>(net, x, t, opt);
      return online_avx2<T, body>(net, x, t, opt);
    case Isa::avx2: return online_avx2<T, body>(net, x, t, opt);
    default: break;
  }
#endif
  return online_generic<T, body>(net, x, t, opt);
}

}  // namespace deltaprop
