// deltaprop._native: the only file that includes pybind11.
//
// Every call follows one pattern: with the GIL held, check shapes and take pointers; then release
// the GIL (and take the network's mutex, in that order, so a thread waiting for the network never
// holds the GIL); run kernels; build Python results after.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <string>

#include "arguments.hpp"
#include "deltaprop/column_sums.hpp"
#include "deltaprop/dispatch.hpp"
#include "deltaprop/gemm.hpp"
#include "deltaprop/network.hpp"
#include "deltaprop/round_trip.hpp"
#include "deltaprop/threads.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace py = pybind11;
using namespace deltaprop;
using namespace deltaprop::arguments;

namespace {

template <typename T>
py::list copy_out(const std::vector<Buffer<T>>& buffers, const std::vector<std::size_t>& sizes,
                  bool matrices) {
  py::list out;
  for (std::size_t l = 0; l < buffers.size(); ++l) {
    py::array_t<T> a = matrices ? py::array_t<T>({sizes[l], sizes[l + 1]})
                                : py::array_t<T>(static_cast<py::ssize_t>(sizes[l + 1]));
    std::memcpy(a.mutable_data(), buffers[l].data(), buffers[l].size() * sizeof(T));
    out.append(a);
  }
  return out;
}

// One checked array per layer, shaped like the weights (matrices) or the biases; nothing is
// written until every array of every list has passed, so a bad list changes nothing.
template <typename T>
std::vector<Input<T>> checked_layers(const py::handle& arrays, const std::vector<std::size_t>& sizes,
                                     bool matrices, const std::string& name) {
  if (!py::isinstance<py::list>(arrays) && !py::isinstance<py::tuple>(arrays))
    throw py::type_error(name + " must be a list of arrays");
  const auto list = py::reinterpret_borrow<py::sequence>(arrays);
  const std::size_t layers = sizes.size() - 1;
  if (list.size() != layers)
    throw py::value_error(name + ": expected " + std::to_string(layers) + " arrays, got " +
                          std::to_string(list.size()));
  std::vector<Input<T>> checked;
  for (std::size_t l = 0; l < layers; ++l) {
    const std::string what = name + "[" + std::to_string(l) + "]";
    Input<T> a = real_input<T>(list[l], what);
    if (matrices)
      check_shape(a, what, sizes[l], sizes[l + 1]);
    else
      check_shape(a, what, sizes[l + 1], -1);
    check_finite(a, what);
    checked.push_back(a);
  }
  return checked;
}

template <typename T>
std::vector<Buffer<T>> to_buffers(const std::vector<Input<T>>& arrays) {
  std::vector<Buffer<T>> out;
  for (const auto& a : arrays) out.emplace_back(a.data(), a.data() + a.size());
  return out;
}

template <typename T>
void copy_into(std::vector<Buffer<T>>& buffers, const std::vector<Input<T>>& arrays) {
  for (std::size_t l = 0; l < buffers.size(); ++l)
    std::memcpy(buffers[l].data(), arrays[l].data(), buffers[l].size() * sizeof(T));
}

// X (rows × sizes[0]) as an array of T, not yet checked finite.
template <typename T>
Input<T> shaped_features(const py::handle& x, const std::vector<std::size_t>& sizes) {
  Input<T> a = real_input<T>(x, "X");
  check_shape(a, "X", -1, sizes.front());
  return a;
}

// X (rows × sizes[0]): real and finite. `largest`, when given, receives max |X|.
template <typename T>
Input<T> features(const py::handle& x, const std::vector<std::size_t>& sizes,
                  double* largest = nullptr) {
  Input<T> a = shaped_features<T>(x, sizes);
  const double magnitude = check_finite(a, "X");
  if (largest) *largest = magnitude;
  return a;
}

template <typename T>
Input<T> targets(const py::handle& t, const std::vector<std::size_t>& sizes, py::ssize_t rows) {
  Input<T> a = real_input<T>(t, "T");
  check_shape(a, "T", rows, sizes.back());
  check_finite(a, "T");
  return a;
}

// Pointers to each layer's W and b gradients inside one flat buffer: W_1, b_1, W_2, b_2, ...
template <typename T>
void flat_layout(const Network<T>& net, T* flat, std::vector<T*>& dw, std::vector<T*>& db) {
  const auto& sizes = net.sizes();
  for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
    dw.push_back(flat);
    flat += sizes[l] * sizes[l + 1];
    db.push_back(flat);
    if (net.has_bias()) flat += sizes[l + 1];
  }
}

// The network's mutex, taken without holding the GIL: a thread holding the mutex may be
// waiting for the GIL (a progress callback), so waiting for the mutex with the GIL held could
// deadlock. Used by the short calls that touch Python objects while they hold the lock.
template <typename T>
std::unique_lock<std::mutex> lock_network(Network<T>& net) {
  std::unique_lock<std::mutex> lock(net.mutex, std::defer_lock);
  if (!lock.try_lock()) {
    py::gil_scoped_release release;
    lock.lock();
  }
  return lock;
}

// An optimizer state's step: an integer (Python's or NumPy's) in [0, 2^63). Left to
// pybind11's cast, anything else was a RuntimeError.
std::int64_t step_count(const py::object& value) {
  if (PyBool_Check(value.ptr()) || !PyIndex_Check(value.ptr()))
    throw py::type_error("optimizer state 'step' must be an integer; got " +
                         py::str(py::type::of(value).attr("__name__")).cast<std::string>());
  const auto index = py::reinterpret_steal<py::object>(PyNumber_Index(value.ptr()));
  if (!index) throw py::error_already_set();
  int overflow = 0;
  const long long step = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
  if (overflow != 0 || step < 0)
    throw py::value_error("optimizer state 'step' must be in [0, 2**63); got " +
                          py::str(index).cast<std::string>());
  return step;
}

template <typename T>
void bind_network(py::module_& m, const char* name) {
  using Net = Network<T>;
  py::class_<Net>(m, name, "A multilayer perceptron owning its parameters (see network.hpp).")
      .def(py::init([](std::vector<std::size_t> sizes, const std::vector<std::string>& acts,
                       const std::string& loss, double alpha, bool bias) {
             std::vector<Activation> parsed = architecture<T>(sizes, acts, loss, alpha);
             try {
               return std::make_unique<Net>(std::move(sizes), std::move(parsed),
                                            loss_from_name(loss), static_cast<T>(alpha), bias);
             } catch (const std::bad_alloc&) {
               PyErr_SetString(PyExc_MemoryError, "not enough memory for the network's parameters");
               throw py::error_already_set();
             }
           }),
           py::arg("sizes"), py::arg("activations"), py::arg("loss"), py::arg("alpha"),
           py::arg("bias"))
      .def_property_readonly("sizes", &Net::sizes)
      .def_property_readonly("has_bias", &Net::has_bias)
      .def("get_weights",
           [](Net& net) {
             std::unique_lock<std::mutex> lock = lock_network(net);
             py::object biases = net.has_bias() ? py::object(copy_out(net.biases, net.sizes(), false))
                                                : py::object(py::none());
             return py::make_tuple(copy_out(net.weights, net.sizes(), true), biases);
           })
      .def("set_weights",
           [](Net& net, const py::object& weights, const py::object& biases) {
             if (net.has_bias() == biases.is_none())
               throw py::value_error(net.has_bias() ? "this network has biases: pass them"
                                                    : "this network has no biases: pass None");
             const auto w = checked_layers<T>(weights, net.sizes(), true, "weights");
             std::vector<Input<T>> b;
             if (net.has_bias()) b = checked_layers<T>(biases, net.sizes(), false, "biases");
             std::unique_lock<std::mutex> lock = lock_network(net);
             copy_into(net.weights, w);
             net.weights_changed();
             if (net.has_bias()) copy_into(net.biases, b);
           })
      .def("forward",
           [](Net& net, const py::object& x_in) {
             const Input<T> x = features<T>(x_in, net.sizes());
             const std::size_t rows = x.shape(0);
             py::array_t<T> out({rows, net.sizes().back()});
             T* o = out.mutable_data();
             {
               py::gil_scoped_release release;
               std::lock_guard<std::mutex> lock(net.mutex);
               net.forward(x.data(), rows, o);
             }
             return out;
           })
      .def("loss",
           [](Net& net, const py::object& x_in, const py::object& t_in) {
             const Input<T> x = features<T>(x_in, net.sizes());
             const Input<T> t = targets<T>(t_in, net.sizes(), x.shape(0));
             py::gil_scoped_release release;
             std::lock_guard<std::mutex> lock(net.mutex);
             return net.loss(x.data(), t.data(), x.shape(0));
           })
      .def("gradients",
           [](Net& net, const py::object& x_in, const py::object& t_in) {
             const Input<T> x = features<T>(x_in, net.sizes());
             const Input<T> t = targets<T>(t_in, net.sizes(), x.shape(0));
             check_workspace<T>(net.sizes(), x.shape(0));
             const auto& sizes = net.sizes();
             py::list dw, db;
             std::vector<T*> dw_ptr, db_ptr;
             for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
               py::array_t<T> w({sizes[l], sizes[l + 1]});
               dw_ptr.push_back(w.mutable_data());
               dw.append(w);
               py::array_t<T> b(static_cast<py::ssize_t>(sizes[l + 1]));
               db_ptr.push_back(b.mutable_data());
               db.append(b);
             }
             {
               py::gil_scoped_release release;
               std::lock_guard<std::mutex> lock(net.mutex);
               net.gradients(x.data(), t.data(), x.shape(0), dw_ptr, db_ptr);
             }
             return py::make_tuple(dw, net.has_bias() ? py::object(db) : py::object(py::none()));
           })
      // Flat gradients, layer by layer (W_1, b_1, W_2, b_2, ...): one contiguous buffer that a
      // single MPI Allreduce can sum.
      .def_property_readonly("n_parameters", &Net::n_parameters)
      .def(
          "gradients_into",
          [](Net& net, const py::object& x_in, const py::object& t_in, InPlace<T> out) {
            const Input<T> x = features<T>(x_in, net.sizes());
            const Input<T> t = targets<T>(t_in, net.sizes(), x.shape(0));
            check_workspace<T>(net.sizes(), x.shape(0));
            check_shape(out, "out", static_cast<py::ssize_t>(net.n_parameters()), -1);
            if (!out.writeable()) throw py::value_error("out must be writeable");
            if (overlaps(out, x) || overlaps(out, t))
              throw py::value_error("out overlaps X or T; pass a separate buffer");
            std::vector<T*> dw, db;
            flat_layout(net, out.mutable_data(), dw, db);
            py::gil_scoped_release release;
            std::lock_guard<std::mutex> lock(net.mutex);
            return net.gradients(x.data(), t.data(), x.shape(0), dw, db);
          },
          py::arg("X"), py::arg("T"), py::arg("out").noconvert(),
          "Write the mean-loss gradients into the flat buffer `out`; return the loss.")
      .def(
          "apply_gradients",
          [](Net& net, InPlace<T> flat, const py::object& opt) {
            check_shape(flat, "gradients", static_cast<py::ssize_t>(net.n_parameters()), -1);
            check_finite(flat, "gradients");
            const OptimizerStep<T> step = optimizer_step<T>(opt);
            std::vector<T*> dw, db;
            flat_layout(net, const_cast<T*>(flat.data()), dw, db);
            const std::vector<const T*> cdw(dw.begin(), dw.end()), cdb(db.begin(), db.end());
            py::gil_scoped_release release;
            std::lock_guard<std::mutex> lock(net.mutex);
            return net.apply_gradients(cdw, cdb, step);
          },
          py::arg("gradients").noconvert(), py::arg("optimizer"),
          "One optimizer step from a flat gradient buffer (as gradients_into writes it); False "
          "when it would have made a parameter or moment non-finite and was undone.")
      .def("train_step",
           [](Net& net, const py::object& x_in, const py::object& t_in, const py::object& opt) {
             const Input<T> x = features<T>(x_in, net.sizes());
             const Input<T> t = targets<T>(t_in, net.sizes(), x.shape(0));
             check_workspace<T>(net.sizes(), x.shape(0));
             const OptimizerStep<T> step = optimizer_step<T>(opt);
             py::gil_scoped_release release;
             std::lock_guard<std::mutex> lock(net.mutex);
             return net.train_step(x.data(), t.data(), x.shape(0), step);
           })
      .def(
          "fit_epoch",
          [](Net& net, const py::object& x_in, const py::object& t_in, const py::object& opt,
             std::size_t batch_size, bool shuffle, std::uint64_t seed, std::uint64_t epoch,
             const py::object& progress, std::optional<double> x_bound) {
            // A caller that checked X itself (deltaprop's Python layer, once per fit call)
            // passes the max |X| it measured, and X is not scanned again every epoch.
            if (x_bound && !(std::isfinite(*x_bound) && *x_bound >= 0))
              throw py::value_error("x_largest must be finite and >= 0; got " +
                                    std::to_string(*x_bound));
            double x_largest = x_bound.value_or(0.0);
            const Input<T> x = x_bound ? shaped_features<T>(x_in, net.sizes())
                                       : features<T>(x_in, net.sizes(), &x_largest);
            const Input<T> t = targets<T>(t_in, net.sizes(), x.shape(0));
            if (batch_size == 0) throw py::value_error("batch_size must be positive");
            check_workspace<T>(net.sizes(), std::min<std::size_t>(batch_size, x.shape(0)));
            const OptimizerStep<T> step = optimizer_step<T>(opt);
            if (!progress.is_none() && !PyCallable_Check(progress.ptr()))
              throw py::type_error("progress must be callable or None");
            // Between steps, at most every 0.1 s: take the GIL to let Ctrl-C through and to feed
            // the progress callback. A Python exception stops the epoch after a whole step.
            std::exception_ptr error;
            typename Net::Progress tick = [&](std::size_t done, double loss_sum) {
              py::gil_scoped_acquire acquire;
              try {
                if (PyErr_CheckSignals() != 0) throw py::error_already_set();
                if (!progress.is_none()) progress(done, loss_sum);
                return true;
              } catch (...) {
                error = std::current_exception();
                return false;
              }
            };
            typename Net::EpochResult result;
            {
              py::gil_scoped_release release;
              std::lock_guard<std::mutex> lock(net.mutex);
              result = net.fit_epoch(x.data(), t.data(), x.shape(0), batch_size, shuffle, seed,
                                     epoch, step, tick, x_largest);
            }
            if (error) std::rethrow_exception(error);
            py::dict out;
            out["loss_mean"] = result.loss_mean;
            out["diverged"] = result.diverged;
            out["batch"] = result.batch;
            return out;
          },
          py::arg("X"), py::arg("T"), py::arg("optimizer"), py::arg("batch_size"),
          py::arg("shuffle"), py::arg("seed"), py::arg("epoch"), py::arg("progress") = py::none(),
          py::arg("x_largest") = py::none())
      .def("optimizer_state",
           [](Net& net) {
             std::unique_lock<std::mutex> lock = lock_network(net);
             py::dict s;
             s["step"] = net.step;
             s["m_weights"] = copy_out(net.m_weights, net.sizes(), true);
             s["m_biases"] = copy_out(net.m_biases, net.sizes(), false);
             s["v_weights"] = copy_out(net.v_weights, net.sizes(), true);
             s["v_biases"] = copy_out(net.v_biases, net.sizes(), false);
             return s;
           })
      .def("set_optimizer_state",
           [](Net& net, const py::dict& s) {
             // Everything is read and checked into new buffers first; the network's state is
             // replaced only when all of it is good.
             auto moments = [&](const char* key, bool matrices) {
               if (!s.contains(key)) throw py::value_error(std::string("optimizer state lacks '") + key + "'");
               const py::object arrays = s[key];
               if (py::len(arrays) == 0) return std::vector<Buffer<T>>{};
               if (!matrices && !net.has_bias())
                 throw py::value_error(std::string(key) + " must be empty: the network has no biases");
               return to_buffers(checked_layers<T>(arrays, net.sizes(), matrices, key));
             };
             auto m_w = moments("m_weights", true), m_b = moments("m_biases", false);
             auto v_w = moments("v_weights", true), v_b = moments("v_biases", false);
             if (!s.contains("step")) throw py::value_error("optimizer state lacks 'step'");
             const std::int64_t step = step_count(s["step"]);
             std::unique_lock<std::mutex> lock = lock_network(net);
             net.reset_optimizer();
             net.m_weights = std::move(m_w);
             net.m_biases = std::move(m_b);
             net.v_weights = std::move(v_w);
             net.v_biases = std::move(v_b);
             net.step = step;
             // Adam keeps second moments, SGD with momentum only a velocity (as reference.py).
             net.state_kind = !net.v_weights.empty()   ? static_cast<int>(OptimizerKind::adam)
                              : !net.m_weights.empty() ? static_cast<int>(OptimizerKind::sgd)
                                                       : -1;
             net.check_moments();  // finite: checked_layers refuses anything else
           })
      .def("reset_optimizer", [](Net& net) {
        std::unique_lock<std::mutex> lock = lock_network(net);
        net.reset_optimizer();
      });
}

// The per-layer loops of dp.ops, for one dtype. Arrays are taken as they are (C-contiguous, of
// this dtype; anything else is a TypeError from pybind11): deltaprop.ops converts first.
template <typename T>
void bind_ops(py::module_& m) {
  auto check_alpha = [](double alpha) {
    if (!(std::isfinite(alpha) && alpha >= 0))
      throw py::value_error("alpha must be finite and >= 0; got " + std::to_string(alpha));
    return static_cast<T>(alpha);
  };
  m.def(
      "largest_magnitude",
      [](InPlace<T> a) {
        py::gil_scoped_release release;
        return max_abs(a.data(), static_cast<std::size_t>(a.size()));
      },
      py::arg("a"),
      "max |a| over every element (0 for none): NaN or infinity exactly when an element is not "
      "finite. A scan on all threads, for the finiteness checks of deltaprop.validation.");
  m.def(
      "forward_layer",
      [check_alpha](InPlace<T> a_prev, InPlace<T> w, std::optional<InPlace<T>> b,
                    const std::string& act, double alpha) {
        check_matrix(w, "W");
        check_shape(a_prev, "A_prev", -1, w.shape(0));
        const py::ssize_t rows = a_prev.shape(0), n = w.shape(1), k = w.shape(0);
        if (b) check_shape(*b, "b", n, -1);
        Epilogue<T> ep;
        ep.kind = EpilogueKind::bias_activation;
        ep.activation = activation_from_name(act);
        ep.alpha = check_alpha(alpha);
        ep.bias = b ? b->data() : nullptr;
        // A_prev and W are proved finite by the products themselves: a NaN or infinity in a row
        // of A_prev makes every product of that row NaN or infinite, and one in a column of W
        // every product of that column. So the epilogue measures the products while they are in
        // L1, and the inputs are scanned (for the error naming the row) only when one is not
        // finite. Scanning them first took more than half as long as the product itself (44 µs
        // against 72 for an A_prev of 256×2048 and a W of 10 columns).
        ep.measure = Measure::products;
        py::array_t<T> out({rows, n});
        T* o = out.mutable_data();
        double products;
        {
          py::gil_scoped_release release;
          products = gemm<T>(rows, n, k, row_major(a_prev.data(), k), row_major(w.data(), n), o, n, ep);
          if (ep.activation == Activation::softmax)
            for (py::ssize_t r = 0; r < rows; ++r) softmax_row(o + r * n, n);
        }
        if (!std::isfinite(products)) {  // bad inputs, or finite ones whose products overflowed
          check_finite(a_prev, "A_prev");
          check_finite(w, "W");
        }
        if (b) check_finite(*b, "b");
        return out;
      },
      py::arg("A_prev").noconvert(), py::arg("W").noconvert(), py::arg("b").noconvert(),
      py::arg("activation"), py::arg("alpha"));
  m.def(
      "apply_activation",
      [check_alpha](InPlace<T> z, const std::string& act, double alpha) {
        if (z.ndim() != 2) throw py::value_error("z must be 2-D; got " + shape_of(z));
        const Activation g = activation_from_name(act);
        if (g == Activation::softmax)
          throw py::value_error("apply_activation is elementwise; softmax is not");
        const T a = check_alpha(alpha);
        py::array_t<T> out({z.shape(0), z.shape(1)});
        T* o = out.mutable_data();
        py::gil_scoped_release release;
        apply_activation<T>(z.data(), o, z.shape(0), z.shape(1), g, a);
        return out;
      },
      py::arg("z").noconvert(), py::arg("activation"), py::arg("alpha") = 0.01,
      "g(z) elementwise through the vectorised kernels of the ISA in use.");
  m.def(
      "output_delta",
      [check_alpha](InPlace<T> a, InPlace<T> t, const std::string& loss, const std::string& act,
                    double alpha) {
        check_matrix(a, "A_L");
        check_shape(t, "T", a.shape(0), a.shape(1));
        const Loss l = loss_from_name(loss);
        const Activation g = activation_from_name(act);
        // The same pairings a network accepts: the fused deltas of cross_entropy and
        // binary_cross_entropy hold only for their own output activation.
        architecture<T>({std::size_t(a.shape(1)), std::size_t(a.shape(1))}, {act}, loss, alpha);
        const T al = check_alpha(alpha);
        check_finite(a, "A_L");
        check_finite(t, "T");
        const py::ssize_t rows = a.shape(0), n = a.shape(1);
        py::array_t<T> out({rows, n});
        T* d = out.mutable_data();
        const T* av = a.data();
        const T* tv = t.data();
        const T scale = T(1) / static_cast<T>(rows);
        {
          py::gil_scoped_release release;
          for (py::ssize_t i = 0; i < rows * n; ++i) d[i] = (av[i] - tv[i]) * scale;
          if (l == Loss::mse)
            for (py::ssize_t r = 0; r < rows; ++r)
              multiply_derivative_row(g, al, d + r * n, av + r * n, d + r * n, n);
        }
        return out;
      },
      py::arg("A_L").noconvert(), py::arg("T").noconvert(), py::arg("loss"), py::arg("activation"),
      py::arg("alpha"));
  m.def(
      "delta",
      [check_alpha](InPlace<T> d, InPlace<T> w, InPlace<T> a_prev, const std::string& act,
                    double alpha) {
        check_matrix(w, "W");
        check_shape(d, "D", -1, w.shape(1));
        check_shape(a_prev, "A_prev", d.shape(0), w.shape(0));
        const py::ssize_t rows = d.shape(0), n_in = w.shape(0), n_out = w.shape(1);
        Epilogue<T> ep;
        ep.kind = EpilogueKind::derivative;
        ep.activation = activation_from_name(act);
        // The derivative runs inside the GEMM's parallel epilogue, where nothing may throw.
        if (ep.activation == Activation::softmax)
          throw py::value_error("softmax has no elementwise derivative: delta takes the "
                                "activation of a hidden layer (identity, sigmoid, tanh, relu, "
                                "leaky_relu)");
        ep.alpha = check_alpha(alpha);
        check_finite(d, "D");
        check_finite(w, "W");
        check_finite(a_prev, "A_prev");
        ep.out = a_prev.data();
        py::array_t<T> out({rows, n_in});
        T* o = out.mutable_data();
        {
          py::gil_scoped_release release;
          gemm<T>(rows, n_in, n_out, row_major(d.data(), n_out), transposed(w.data(), n_out), o,
                  n_in, ep);
        }
        return out;
      },
      py::arg("D").noconvert(), py::arg("W").noconvert(), py::arg("A_prev").noconvert(),
      py::arg("activation"), py::arg("alpha"));
  m.def(
      "update",
      [](InPlace<T> w, std::optional<InPlace<T>> b, InPlace<T> a_prev, InPlace<T> d, double lr) {
        check_matrix(w, "W");
        check_shape(d, "D", -1, w.shape(1));
        check_shape(a_prev, "A_prev", d.shape(0), w.shape(0));
        if (b) check_shape(*b, "b", w.shape(1), -1);
        if (!w.writeable() || (b && !b->writeable()))
          throw py::value_error("W and b are updated in place and must be writeable");
        if (!(std::isfinite(lr) && lr > 0 && std::isfinite(static_cast<T>(lr))))
          throw py::value_error("lr must be positive and finite; got " + std::to_string(lr));
        for (const py::array* in : {static_cast<const py::array*>(&a_prev),
                                    static_cast<const py::array*>(&d)})
          if (overlaps(*in, w) || (b && overlaps(*in, *b)))
            throw py::value_error("A_prev and D must not overlap the W or b being updated");
        if (b && overlaps(w, *b)) throw py::value_error("W and b must not overlap");
        check_finite(w, "W");
        if (b) check_finite(*b, "b");
        check_finite(a_prev, "A_prev");
        check_finite(d, "D");
        const py::ssize_t rows = d.shape(0), n_in = w.shape(0), n_out = w.shape(1);
        check_allocatable<T>(checked_product(n_in, n_out, "W is too large"), "the update's scratch");
        Epilogue<T> ep;
        ep.kind = EpilogueKind::optimizer;
        ep.param = w.mutable_data();
        ep.step.lr = static_cast<T>(lr);
        T* bias = b ? b->mutable_data() : nullptr;
        const T* dv = d.data();
        const T* av = a_prev.data();
        py::gil_scoped_release release;
        Buffer<T> scratch(rows > gemm_kernel<T>().kc ? n_in * n_out : 0);
        Buffer<T> g(bias ? n_out : 0);
        const auto bias_columns = [&](std::ptrdiff_t j0, std::ptrdiff_t j1) {  // Σ_rows D, then b
          const auto count = static_cast<std::size_t>(j1 - j0);
          const auto ld = static_cast<std::size_t>(n_out);
          column_sums(dv + j0, static_cast<std::size_t>(rows), count, ld, g.data() + j0);
          apply_update(ep.step, bias + j0, g.data() + j0, static_cast<T*>(nullptr),
                       static_cast<T*>(nullptr), count, false);
        };
        if (bias) with_columns_done(ep, bias_columns);
        gemm<T>(n_in, n_out, rows, transposed(av, n_in), row_major(dv, n_out),
                scratch.empty() ? nullptr : scratch.data(), n_out, ep);
      },
      py::arg("W").noconvert(), py::arg("b").noconvert(), py::arg("A_prev").noconvert(),
      py::arg("D").noconvert(), py::arg("lr"));
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "deltaprop's native kernels: SIMD GEMM with fused epilogues, OpenMP, whole epochs in C++";
  select_isa_from_environment();

  bind_network<float>(m, "Network32");
  bind_network<double>(m, "Network64");
  bind_ops<float>(m);
  bind_ops<double>(m);

  m.def(
      "epoch_order",
      [](std::size_t n, std::uint64_t seed, std::uint64_t epoch) {
        check_allocatable<std::int64_t>(checked_product(n, 4, "n is too large"),
                                        "the order of " + std::to_string(n) + " samples");
        EpochOrder order;
        {
          py::gil_scoped_release release;
          order.compute(n, seed, epoch);
        }
        py::array_t<std::int64_t> out(static_cast<py::ssize_t>(n));
        std::copy(order.order.begin(), order.order.end(), out.mutable_data());
        return out;
      },
      py::arg("n"), py::arg("seed"), py::arg("epoch"),
        "The sample order of one epoch (same as deltaprop.shuffle.epoch_order).");
  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 1 || n > thread_cap())
          throw py::value_error("number of threads must be >= 1 and <= " +
                                std::to_string(thread_cap()) + " (" +
                                std::to_string(threads_per_processor_cap) +
                                " a processor); got " + std::to_string(n));
        set_max_threads(n);
      },
      py::arg("n"));
  m.def("get_num_threads", &max_threads);
  m.def("set_stream_beyond_round_trip_ns", &set_stream_beyond_round_trip_ns, py::arg("ns"),
        "Gathered batches are streamed past the caches while the round trip between the first "
        "two threads' cores is longer than ns (150 by default; 0: always with two threads, "
        "infinity: never). Returns the previous bound. For tests and benchmarks.");
  m.def(
      "round_trip_ns",
      [] {
        py::gil_scoped_release release;
        alignas(64) std::atomic<std::int64_t> ball{0};
        double ns = std::numeric_limits<double>::quiet_NaN();
        on_threads(2, [&](std::ptrdiff_t team, std::ptrdiff_t me) {
          time_round_trip(ball, team, me, ns);
        });
        return ns;
      },
      "A cache line's round trip between the cores of two threads, in ns, as fit_epoch measures "
      "it to choose how it gathers batches; NaN where the two did not answer each other in time "
      "(sharing one CPU) or only one thread ran. For tests and benchmarks.");
  m.def("thread_cap", &thread_cap);
  m.def("select_isa", &select_isa, py::arg("name"),
        "Switch the kernels to another ISA this CPU supports (for tests and benchmarks).");
  m.def("cpu_info", []() {
    py::dict info;
    info["isa"] = isa_in_use();
    info["isas_supported"] = supported_isas();
    info["gemm_kernel_f32"] = std::string(gemm_kernel<float>().isa) + " " +
                              std::to_string(gemm_kernel<float>().mr) + "x" +
                              std::to_string(gemm_kernel<float>().nr);
    info["gemm_kernel_f64"] = std::string(gemm_kernel<double>().isa) + " " +
                              std::to_string(gemm_kernel<double>().mr) + "x" +
                              std::to_string(gemm_kernel<double>().nr);
    info["threads"] = max_threads();
#ifdef _OPENMP
    info["openmp"] = _OPENMP;
#else
    info["openmp"] = py::none();
#endif
    info["compiler"] = __VERSION__;
    info["build_flags"] = DELTAPROP_BUILD;
    return info;
  });
}
