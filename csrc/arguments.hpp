// Argument checks of deltaprop._native. Part of bindings.cpp (the one translation unit that
// includes pybind11), kept apart so the module definition stays readable.
//
// The module is importable on its own, so it trusts nothing that crosses it: every check runs
// with the GIL held, before a kernel starts and before anything is written, so a call that
// raises leaves the network exactly as it was. ValueError for wrong values and shapes,
// TypeError for wrong kinds, MemoryError for sizes whose buffers cannot exist.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "deltaprop/activation.hpp"
#include "deltaprop/loss.hpp"
#include "deltaprop/magnitude.hpp"
#include "deltaprop/optimizer.hpp"

namespace deltaprop {
namespace arguments {

namespace py = pybind11;

// Inputs: zero-copy when C-contiguous of the network's dtype, converted otherwise.
template <typename T>
using Input = py::array_t<T, py::array::c_style | py::array::forcecast>;
// In-place outputs and the arrays of dp.ops: exactly the right dtype and layout, or refused
// (never a silent copy). Taken as they are by the caster below. Hidden, as pybind11's own types.
template <typename T>
class __attribute__((visibility("hidden"))) InPlace : public py::array_t<T, py::array::c_style> {
  using Array = py::array_t<T, py::array::c_style>;

 public:
  InPlace() : Array(py::handle(), py::object::borrowed_t{}) {}  // none yet: allocates nothing
  InPlace(py::handle h, py::object::borrowed_t) : Array(h, py::object::borrowed_t{}) {}
};

inline std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// rows < 0: any positive number of rows; cols < 0: a 1-D array of `rows` elements.
inline void check_shape(const py::array& a, const std::string& name, py::ssize_t rows,
                        py::ssize_t cols) {
  const bool ok = cols < 0 ? a.ndim() == 1 && a.shape(0) == rows
                           : a.ndim() == 2 && (rows < 0 || a.shape(0) == rows) && a.shape(1) == cols;
  if (ok && a.size() > 0) return;
  std::string want = cols < 0 ? "(" + std::to_string(rows) + ",)"
                              : "(" + (rows < 0 ? std::string("B > 0") : std::to_string(rows)) +
                                    ", " + std::to_string(cols) + ")";
  throw py::value_error(name + " must have shape " + want + "; got " + shape_of(a));
}

// A non-empty 2-D array (the weight matrix of dp.ops, whose shape sets the others').
inline void check_matrix(const py::array& a, const std::string& name) {
  if (a.ndim() != 2 || a.size() == 0)
    throw py::value_error(name + " must be a non-empty 2-D array; got shape " + shape_of(a));
}

// The casting rule of deltaprop.validation: bool, integer and float arrays convert to T;
// complex, object, string and other arrays are a TypeError, never a lossy cast.
template <typename T>
Input<T> real_input(const py::handle& obj, const std::string& name) {
  const py::module_ np = py::module_::import("numpy");
  const py::array a = py::isinstance<py::array>(obj) ? py::reinterpret_borrow<py::array>(obj)
                                                     : py::array(np.attr("asarray")(obj));
  const char kind = a.dtype().kind();
  if (kind != 'b' && kind != 'i' && kind != 'u' && kind != 'f')
    throw py::type_error(name + " must hold real numbers (bool, int or float); got dtype " +
                         py::str(a.dtype()).cast<std::string>());
  if (Input<T>::check_(a)) return py::reinterpret_borrow<Input<T>>(a);  // zero-copy
  // float64 beyond float32's range becomes inf, which the finiteness check reports; NumPy's
  // overflow warning on the way would only be noise (or an error under -W error).
  py::object quiet = np.attr("errstate")(py::arg("over") = "ignore", py::arg("invalid") = "ignore");
  quiet.attr("__enter__")();
  py::object converted;
  try {  // NumPy's own error (MemoryError for a copy that cannot exist) propagates
    converted = np.attr("ascontiguousarray")(a, py::arg("dtype") = py::dtype::of<T>());
  } catch (...) {
    quiet.attr("__exit__")(py::none(), py::none(), py::none());
    throw;
  }
  quiet.attr("__exit__")(py::none(), py::none(), py::none());
  return py::reinterpret_borrow<Input<T>>(converted);
}

// ValueError naming the first row (of `cols` elements) that holds NaN or infinity; otherwise
// returns the largest magnitude.
template <typename T>
double check_finite(const T* p, std::size_t rows, std::size_t cols, const std::string& name) {
  const double magnitude = max_abs(p, rows * cols);
  if (std::isfinite(magnitude)) return magnitude;  // the common case, vectorised
  constexpr T largest = std::numeric_limits<T>::max();
  for (std::size_t r = 0; r < rows; ++r) {
    bool finite = true;  // an AND over the row vectorises; a branch per element would not
    for (std::size_t j = 0; j < cols; ++j) finite &= std::fabs(p[r * cols + j]) <= largest;
    if (!finite)
      throw py::value_error(name + " must be finite; " + (cols == 1 && rows > 1 ? "element " : "row ") +
                            std::to_string(r) + " holds NaN or infinity");
  }
  return magnitude;  // unreachable: max_abs saw a row that is not finite
}

template <typename T, int Flags>
double check_finite(const py::array_t<T, Flags>& a, const std::string& name) {
  const std::size_t rows = a.ndim() >= 1 ? a.shape(0) : 1;
  return check_finite(a.data(), rows, rows ? a.size() / rows : 0, name);
}

// a · b, or `error` when the product does not fit in size_t.
inline std::size_t checked_product(std::size_t a, std::size_t b, const std::string& error) {
  std::size_t out;
  if (__builtin_mul_overflow(a, b, &out)) throw py::value_error(error);
  return out;
}

// MemoryError for buffers of `elements` T that could never be allocated (more bytes than the
// address space), before a std::vector would overflow computing their size.
template <typename T>
void check_allocatable(std::size_t elements, const std::string& what) {
  if (elements > std::numeric_limits<std::ptrdiff_t>::max() / (4 * sizeof(T))) {
    PyErr_SetString(PyExc_MemoryError, (what + " would need more memory than can be addressed (" +
                                        std::to_string(elements) + " elements)").c_str());
    throw py::error_already_set();
  }
}

// The layer loops' workspace for `rows` rows: each layer's activations and deltas.
template <typename T>
void check_workspace(const std::vector<std::size_t>& sizes, std::size_t rows) {
  std::size_t widest = 0, total = 0;
  for (std::size_t s : sizes) widest = std::max(widest, s);
  const std::string error = "a batch of " + std::to_string(rows) + " rows is too large for " +
                            "layers of up to " + std::to_string(widest) + " units";
  for (std::size_t s : sizes) {
    const std::size_t layer = checked_product(rows, s, error);
    if (__builtin_add_overflow(total, 2 * layer, &total)) throw py::value_error(error);
  }
  check_allocatable<T>(total, "the workspace of " + std::to_string(rows) + " rows");
}

inline double finite_number(const py::object& value, const std::string& name) {
  double x;
  try {
    x = value.cast<double>();
  } catch (const py::cast_error&) {
    throw py::type_error(name + " must be a number; got " +
                         py::str(py::type::of(value).attr("__name__")).cast<std::string>());
  }
  if (!std::isfinite(x)) throw py::value_error(name + " must be finite; got " + std::to_string(x));
  return x;
}

// One optimizer's hyper-parameters, read from a deltaprop.SGD/Adam (or any object with the same
// attributes) and range-checked as deltaprop.optim does.
template <typename T>
OptimizerStep<T> optimizer_step(const py::object& opt) {
  auto attr = [&](const char* name) {
    if (!py::hasattr(opt, name))
      throw py::type_error(std::string("optimizer must be a deltaprop.SGD or deltaprop.Adam; ") +
                           "it has no attribute '" + name + "'");
    return finite_number(opt.attr(name), std::string("optimizer.") + name);
  };
  auto in_range = [&](const char* name, double low, double high, bool low_open) {
    const double x = attr(name);
    if (x < low || x >= high || (low_open && x == low))
      throw py::value_error(std::string("optimizer.") + name + " must be in " +
                            (low_open ? "(" : "[") + std::to_string(low) + ", " +
                            std::to_string(high) + "); got " + std::to_string(x));
    return x;
  };
  constexpr double inf = std::numeric_limits<double>::infinity();
  if (!py::hasattr(opt, "kind") || !py::isinstance<py::str>(opt.attr("kind")))
    throw py::type_error("optimizer must be a deltaprop.SGD or deltaprop.Adam (with kind 'sgd' "
                         "or 'adam')");
  const auto kind = opt.attr("kind").cast<std::string>();
  OptimizerStep<T> s;
  if (kind == "adam") {
    s.kind = OptimizerKind::adam;
    s.beta1_exact = in_range("beta1", 0.0, 1.0, false);
    s.beta2_exact = in_range("beta2", 0.0, 1.0, false);
    s.beta1 = static_cast<T>(s.beta1_exact);
    s.beta2 = static_cast<T>(s.beta2_exact);
    s.one_minus_beta1 = static_cast<T>(1.0 - s.beta1_exact);
    s.one_minus_beta2 = static_cast<T>(1.0 - s.beta2_exact);
    s.eps = static_cast<T>(in_range("eps", 0.0, inf, true));
    if (!(s.eps > T(0))) throw py::value_error("optimizer.eps is 0 in this dtype; use a larger eps");
  } else if (kind == "sgd") {
    s.momentum = static_cast<T>(in_range("momentum", 0.0, 1.0, false));
    if (!py::hasattr(opt, "nesterov")) throw py::type_error("optimizer has no attribute 'nesterov'");
    s.nesterov = py::bool_(opt.attr("nesterov"));
  } else {
    throw py::value_error("unknown optimizer kind '" + kind + "'; expected one of sgd, adam");
  }
  s.lr = static_cast<T>(in_range("lr", 0.0, inf, true));
  s.weight_decay = static_cast<T>(in_range("weight_decay", 0.0, inf, false));
  if (!std::isfinite(s.lr) || !std::isfinite(s.weight_decay))
    throw py::value_error("optimizer.lr and weight_decay must be finite in the network's dtype");
  return s;
}

// The architecture a Network is built from, checked as deltaprop.spec.NetSpec.build does:
// softmax only as the output of cross_entropy (it has no elementwise derivative), the loss's
// own output activation, and parameter buffers whose sizes can be computed.
template <typename T>
std::vector<Activation> architecture(const std::vector<std::size_t>& sizes,
                                     const std::vector<std::string>& names, const std::string& loss,
                                     double alpha) {
  if (sizes.size() < 2)
    throw py::value_error("sizes needs at least an input and an output size; got " +
                          std::to_string(sizes.size()) + " sizes");
  if (names.size() != sizes.size() - 1)
    throw py::value_error("expected one activation per layer (" + std::to_string(sizes.size() - 1) +
                          "); got " + std::to_string(names.size()));
  std::size_t parameters = 0;
  const std::string too_large = "the network is too large: its parameters overflow size_t";
  for (std::size_t l = 0; l < sizes.size(); ++l) {
    if (sizes[l] == 0) throw py::value_error("layer sizes must be positive");
    if (l == 0) continue;
    const std::size_t layer = checked_product(sizes[l - 1], sizes[l] + 1, too_large);
    if (__builtin_add_overflow(parameters, layer, &parameters)) throw py::value_error(too_large);
  }
  // Weights, biases and up to two optimizer moments of each.
  check_allocatable<T>(checked_product(parameters, 3, too_large), "the network's parameters");
  const Loss l = loss_from_name(loss);
  std::vector<Activation> acts;
  for (const auto& name : names) acts.push_back(activation_from_name(name));
  for (std::size_t i = 0; i + 1 < acts.size(); ++i)
    if (acts[i] == Activation::softmax)
      throw py::value_error("softmax is an output activation (with cross_entropy); hidden layer " +
                            std::to_string(i + 1) + " cannot use it");
  const Activation out = acts.back();
  if (l == Loss::cross_entropy && out != Activation::softmax)
    throw py::value_error("loss 'cross_entropy' needs output activation 'softmax'; got '" +
                          names.back() + "'");
  if (l == Loss::binary_cross_entropy && out != Activation::sigmoid)
    throw py::value_error("loss 'binary_cross_entropy' needs output activation 'sigmoid'; got '" +
                          names.back() + "'");
  if (l == Loss::mse && out == Activation::softmax)
    throw py::value_error("softmax output needs loss 'cross_entropy'");
  if (!(std::isfinite(alpha) && alpha >= 0))
    throw py::value_error("alpha must be finite and >= 0; got " + std::to_string(alpha));
  return acts;
}

// Whether two arrays' memory overlaps (an in-place update must not read what it writes).
inline bool overlaps(const py::array& a, const py::array& b) {
  const auto* a0 = static_cast<const char*>(a.data());
  const auto* b0 = static_cast<const char*>(b.data());
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

}  // namespace arguments
}  // namespace deltaprop

namespace pybind11 {
namespace detail {

// An InPlace argument is the caller's array itself or a mismatch. pybind11's caster for array_t
// builds an empty array before every call and then has NumPy convert even a matching one: for
// dp.ops's small products that was a quarter of the call (forward_layer on 32x64 . 64x10:
// 1.41 -> 1.09 us; NumPy's A @ W 1.27 us).
template <typename T>
struct pyobject_caster<deltaprop::arguments::InPlace<T>> {
  using Array = array_t<T, array::c_style>;

  bool load(handle src, bool /* convert: nothing to convert to */) {
    if (!Array::check_(src)) return false;
    value = reinterpret_borrow<deltaprop::arguments::InPlace<T>>(src);
    return true;
  }

  static handle cast(const handle& src, return_value_policy, handle) { return src.inc_ref(); }
  PYBIND11_TYPE_CASTER(deltaprop::arguments::InPlace<T>, handle_type_name<Array>::name);
};

}  // namespace detail
}  // namespace pybind11
