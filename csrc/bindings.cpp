// deltaprop._native: the only file that includes pybind11.
//
// Every call follows one pattern: with the GIL held, check shapes and take pointers; then release
// the GIL (and take the network's mutex, in that order, so a thread waiting for the network never
// holds the GIL); run kernels; build Python results after.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <exception>
#include <mutex>
#include <string>

#include "deltaprop/dispatch.hpp"
#include "deltaprop/gemm.hpp"
#include "deltaprop/network.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace py = pybind11;
using namespace deltaprop;

namespace {

// Inputs: zero-copy when C-contiguous of the network's dtype, converted otherwise.
template <typename T>
using Input = py::array_t<T, py::array::c_style | py::array::forcecast>;
// In-place outputs: exactly the right dtype and layout, or refused (never a silent copy).
template <typename T>
using InPlace = py::array_t<T, py::array::c_style>;

std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

void check_shape(const py::array& a, const char* name, py::ssize_t rows, py::ssize_t cols) {
  const bool ok = cols < 0 ? a.ndim() == 1 && a.shape(0) == rows
                           : a.ndim() == 2 && (rows < 0 || a.shape(0) == rows) && a.shape(1) == cols;
  if (ok && (cols < 0 || a.shape(0) > 0)) return;
  std::string want = cols < 0 ? "(" + std::to_string(rows) + ",)"
                              : "(" + (rows < 0 ? std::string("B > 0") : std::to_string(rows)) +
                                    ", " + std::to_string(cols) + ")";
  throw std::invalid_argument(std::string(name) + " must have shape " + want + "; got " +
                              shape_of(a));
}

template <typename T>
OptimizerStep<T> optimizer_step(const py::object& opt) {
  OptimizerStep<T> s;
  const auto kind = opt.attr("kind").cast<std::string>();
  if (kind == "adam") {
    s.kind = OptimizerKind::adam;
    s.beta1_exact = opt.attr("beta1").cast<double>();
    s.beta2_exact = opt.attr("beta2").cast<double>();
    s.beta1 = static_cast<T>(s.beta1_exact);
    s.beta2 = static_cast<T>(s.beta2_exact);
    s.one_minus_beta1 = static_cast<T>(1.0 - s.beta1_exact);
    s.one_minus_beta2 = static_cast<T>(1.0 - s.beta2_exact);
    s.eps = opt.attr("eps").cast<T>();
  } else if (kind == "sgd") {
    s.momentum = opt.attr("momentum").cast<T>();
    s.nesterov = opt.attr("nesterov").cast<bool>();
  } else {
    throw std::invalid_argument("unknown optimizer kind '" + kind + "'; expected sgd or adam");
  }
  s.lr = opt.attr("lr").cast<T>();
  s.weight_decay = opt.attr("weight_decay").cast<T>();
  return s;
}

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

template <typename T>
void copy_in(std::vector<Buffer<T>>& buffers, const py::list& arrays,
             const std::vector<std::size_t>& sizes, bool matrices, const char* name) {
  if (arrays.size() != buffers.size())
    throw std::invalid_argument(std::string(name) + ": expected " +
                                std::to_string(buffers.size()) + " arrays, got " +
                                std::to_string(arrays.size()));
  std::vector<Input<T>> checked;
  for (std::size_t l = 0; l < buffers.size(); ++l) {
    auto a = Input<T>::ensure(arrays[l]);
    if (!a) throw py::error_already_set();
    const std::string what = std::string(name) + "[" + std::to_string(l) + "]";
    if (matrices)
      check_shape(a, what.c_str(), sizes[l], sizes[l + 1]);
    else
      check_shape(a, what.c_str(), sizes[l + 1], -1);
    checked.push_back(a);
  }
  for (std::size_t l = 0; l < buffers.size(); ++l)
    std::memcpy(buffers[l].data(), checked[l].data(), buffers[l].size() * sizeof(T));
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

template <typename T>
void bind_network(py::module_& m, const char* name) {
  using Net = Network<T>;
  py::class_<Net>(m, name, "A multilayer perceptron owning its parameters (see network.hpp).")
      .def(py::init([](std::vector<std::size_t> sizes, const std::vector<std::string>& acts,
                       const std::string& loss, double alpha, bool bias) {
             for (std::size_t s : sizes)
               if (s == 0) throw std::invalid_argument("layer sizes must be positive");
             std::vector<Activation> parsed;
             for (const auto& a : acts) parsed.push_back(activation_from_name(a));
             return std::make_unique<Net>(std::move(sizes), std::move(parsed),
                                          loss_from_name(loss), static_cast<T>(alpha), bias);
           }),
           py::arg("sizes"), py::arg("activations"), py::arg("loss"), py::arg("alpha"),
           py::arg("bias"))
      .def_property_readonly("sizes", &Net::sizes)
      .def("get_weights",
           [](Net& net) {
             std::lock_guard<std::mutex> lock(net.mutex);
             py::object biases = net.has_bias() ? py::object(copy_out(net.biases, net.sizes(), false))
                                                : py::object(py::none());
             return py::make_tuple(copy_out(net.weights, net.sizes(), true), biases);
           })
      .def("set_weights",
           [](Net& net, const py::list& weights, const py::object& biases) {
             if (net.has_bias() == biases.is_none())
               throw std::invalid_argument(net.has_bias() ? "this network has biases: pass them"
                                                          : "this network has no biases: pass None");
             std::lock_guard<std::mutex> lock(net.mutex);
             copy_in(net.weights, weights, net.sizes(), true, "weights");
             if (net.has_bias()) copy_in(net.biases, biases.cast<py::list>(), net.sizes(), false, "biases");
           })
      .def("forward",
           [](Net& net, Input<T> x) {
             check_shape(x, "X", -1, net.sizes().front());
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
           [](Net& net, Input<T> x, Input<T> t) {
             check_shape(x, "X", -1, net.sizes().front());
             check_shape(t, "T", x.shape(0), net.sizes().back());
             py::gil_scoped_release release;
             std::lock_guard<std::mutex> lock(net.mutex);
             return net.loss(x.data(), t.data(), x.shape(0));
           })
      .def("gradients",
           [](Net& net, Input<T> x, Input<T> t) {
             check_shape(x, "X", -1, net.sizes().front());
             check_shape(t, "T", x.shape(0), net.sizes().back());
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
          [](Net& net, Input<T> x, Input<T> t, InPlace<T> out) {
            check_shape(x, "X", -1, net.sizes().front());
            check_shape(t, "T", x.shape(0), net.sizes().back());
            check_shape(out, "out", static_cast<py::ssize_t>(net.n_parameters()), -1);
            if (!out.writeable()) throw std::invalid_argument("out must be writeable");
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
            const OptimizerStep<T> step = optimizer_step<T>(opt);
            std::vector<T*> dw, db;
            flat_layout(net, const_cast<T*>(flat.data()), dw, db);
            const std::vector<const T*> cdw(dw.begin(), dw.end()), cdb(db.begin(), db.end());
            py::gil_scoped_release release;
            std::lock_guard<std::mutex> lock(net.mutex);
            net.apply_gradients(cdw, cdb, step);
          },
          py::arg("gradients").noconvert(), py::arg("optimizer"),
          "One optimizer step from a flat gradient buffer (as gradients_into writes it).")
      .def("train_step",
           [](Net& net, Input<T> x, Input<T> t, const py::object& opt) {
             check_shape(x, "X", -1, net.sizes().front());
             check_shape(t, "T", x.shape(0), net.sizes().back());
             const OptimizerStep<T> step = optimizer_step<T>(opt);
             py::gil_scoped_release release;
             std::lock_guard<std::mutex> lock(net.mutex);
             return net.train_step(x.data(), t.data(), x.shape(0), step);
           })
      .def(
          "fit_epoch",
          [](Net& net, Input<T> x, Input<T> t, const py::object& opt, std::size_t batch_size,
             bool shuffle, std::uint64_t seed, std::uint64_t epoch, const py::object& progress) {
            check_shape(x, "X", -1, net.sizes().front());
            check_shape(t, "T", x.shape(0), net.sizes().back());
            if (batch_size == 0) throw std::invalid_argument("batch_size must be positive");
            const OptimizerStep<T> step = optimizer_step<T>(opt);
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
                                     epoch, step, tick);
            }
            if (error) std::rethrow_exception(error);
            py::dict out;
            out["loss_sum"] = result.loss_sum;
            out["samples"] = result.samples;
            out["diverged"] = result.diverged;
            out["batch"] = result.batch;
            return out;
          },
          py::arg("X"), py::arg("T"), py::arg("optimizer"), py::arg("batch_size"),
          py::arg("shuffle"), py::arg("seed"), py::arg("epoch"), py::arg("progress") = py::none())
      .def("optimizer_state",
           [](Net& net) {
             std::lock_guard<std::mutex> lock(net.mutex);
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
             std::lock_guard<std::mutex> lock(net.mutex);
             auto load = [&](std::vector<Buffer<T>>& moments, const std::vector<Buffer<T>>& params,
                             const char* key, bool matrices) {
               const py::list arrays = s[key].cast<py::list>();
               moments.clear();
               if (arrays.size() == 0) return;
               for (const auto& p : params) moments.emplace_back(p.size(), T(0));
               copy_in(moments, arrays, net.sizes(), matrices, key);
             };
             net.reset_optimizer();
             load(net.m_weights, net.weights, "m_weights", true);
             load(net.m_biases, net.biases, "m_biases", false);
             load(net.v_weights, net.weights, "v_weights", true);
             load(net.v_biases, net.biases, "v_biases", false);
             net.step = s["step"].cast<std::int64_t>();
             // Adam keeps second moments, SGD with momentum only a velocity (as reference.py).
             net.state_kind = !net.v_weights.empty()   ? static_cast<int>(OptimizerKind::adam)
                              : !net.m_weights.empty() ? static_cast<int>(OptimizerKind::sgd)
                                                       : -1;
           })
      .def("reset_optimizer", [](Net& net) {
        std::lock_guard<std::mutex> lock(net.mutex);
        net.reset_optimizer();
      });
}

// The per-layer loops of dp.ops, for one dtype.
template <typename T>
void bind_ops(py::module_& m) {
  m.def(
      "forward_layer",
      [](InPlace<T> a_prev, InPlace<T> w, std::optional<InPlace<T>> b, const std::string& act,
         double alpha) {
        check_shape(w, "W", -1, w.ndim() == 2 ? w.shape(1) : -2);
        check_shape(a_prev, "A_prev", -1, w.shape(0));
        const py::ssize_t rows = a_prev.shape(0), n = w.shape(1), k = w.shape(0);
        if (b) check_shape(*b, "b", n, -1);
        Epilogue<T> ep;
        ep.kind = EpilogueKind::bias_activation;
        ep.activation = activation_from_name(act);
        ep.alpha = static_cast<T>(alpha);
        ep.bias = b ? b->data() : nullptr;
        py::array_t<T> out({rows, n});
        T* o = out.mutable_data();
        {
          py::gil_scoped_release release;
          gemm<T>(rows, n, k, row_major(a_prev.data(), k), row_major(w.data(), n), o, n, ep);
          if (ep.activation == Activation::softmax)
            for (py::ssize_t r = 0; r < rows; ++r) softmax_row(o + r * n, n);
        }
        return out;
      },
      py::arg("A_prev").noconvert(), py::arg("W").noconvert(), py::arg("b").noconvert(),
      py::arg("activation"), py::arg("alpha"));
  m.def(
      "apply_activation",
      [](InPlace<T> z, const std::string& act, double alpha) {
        if (z.ndim() != 2) throw std::invalid_argument("z must be 2-D; got " + shape_of(z));
        const Activation g = activation_from_name(act);
        if (g == Activation::softmax)
          throw std::invalid_argument("apply_activation is elementwise; softmax is not");
        py::array_t<T> out({z.shape(0), z.shape(1)});
        T* o = out.mutable_data();
        py::gil_scoped_release release;
        apply_activation<T>(z.data(), o, z.shape(0), z.shape(1), g, static_cast<T>(alpha));
        return out;
      },
      py::arg("z").noconvert(), py::arg("activation"), py::arg("alpha") = 0.01,
      "g(z) elementwise through the vectorised kernels of the ISA in use.");
  m.def(
      "output_delta",
      [](InPlace<T> a, InPlace<T> t, const std::string& loss, const std::string& act,
         double alpha) {
        check_shape(a, "A_L", -1, a.ndim() == 2 ? a.shape(1) : -2);
        check_shape(t, "T", a.shape(0), a.shape(1));
        const Loss l = loss_from_name(loss);
        const Activation g = activation_from_name(act);
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
              multiply_derivative_row(g, static_cast<T>(alpha), d + r * n, av + r * n, d + r * n, n);
        }
        return out;
      },
      py::arg("A_L").noconvert(), py::arg("T").noconvert(), py::arg("loss"), py::arg("activation"),
      py::arg("alpha"));
  m.def(
      "delta",
      [](InPlace<T> d, InPlace<T> w, InPlace<T> a_prev, const std::string& act, double alpha) {
        check_shape(w, "W", -1, w.ndim() == 2 ? w.shape(1) : -2);
        check_shape(d, "D", -1, w.shape(1));
        check_shape(a_prev, "A_prev", d.shape(0), w.shape(0));
        const py::ssize_t rows = d.shape(0), n_in = w.shape(0), n_out = w.shape(1);
        Epilogue<T> ep;
        ep.kind = EpilogueKind::derivative;
        ep.activation = activation_from_name(act);
        ep.alpha = static_cast<T>(alpha);
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
        check_shape(w, "W", -1, w.ndim() == 2 ? w.shape(1) : -2);
        check_shape(d, "D", -1, w.shape(1));
        check_shape(a_prev, "A_prev", d.shape(0), w.shape(0));
        if (b) check_shape(*b, "b", w.shape(1), -1);
        if (!w.writeable() || (b && !b->writeable()))
          throw std::invalid_argument("W and b are updated in place and must be writeable");
        const py::ssize_t rows = d.shape(0), n_in = w.shape(0), n_out = w.shape(1);
        Epilogue<T> ep;
        ep.kind = EpilogueKind::optimizer;
        ep.param = w.mutable_data();
        ep.step.lr = static_cast<T>(lr);
        T* bias = b ? b->mutable_data() : nullptr;
        const T* dv = d.data();
        const T* av = a_prev.data();
        py::gil_scoped_release release;
        Buffer<T> scratch(rows > gemm_kernel<T>().kc ? n_in * n_out : 0);
        gemm<T>(n_in, n_out, rows, transposed(av, n_in), row_major(dv, n_out),
                scratch.empty() ? nullptr : scratch.data(), n_out, ep);
        if (bias) {
          Buffer<T> g(n_out, T(0));
          for (py::ssize_t r = 0; r < rows; ++r)
            for (py::ssize_t j = 0; j < n_out; ++j) g[j] += dv[r * n_out + j];
          apply_update(ep.step, bias, g.data(), static_cast<T*>(nullptr), static_cast<T*>(nullptr),
                       n_out, false);
        }
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
        std::vector<std::int64_t> order;
        {
          py::gil_scoped_release release;
          order = epoch_order(n, seed, epoch);
        }
        py::array_t<std::int64_t> out(static_cast<py::ssize_t>(n));
        std::copy(order.begin(), order.end(), out.mutable_data());
        return out;
      },
      py::arg("n"), py::arg("seed"), py::arg("epoch"),
        "The sample order of one epoch (same as deltaprop.shuffle.epoch_order).");
  m.def("set_num_threads", &set_max_threads, py::arg("n"));
  m.def("get_num_threads", &max_threads);
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
    return info;
  });
}
