// jaxviz's oneDNN convolution, called from XLA through the FFI (jax.ffi).
//
// y = conv(x, k): a 'same', stride-1 2-D convolution of float32 images x [N, H, W, Cin] (NHWC)
// with an odd kernel k [kh, kw, Cin, Cout] (HWIO), giving y [N, H, W, Cout] (NHWC), exactly what
// jaxviz.models.layers.conv_same computes. oneDNN picks the kernel's layout; the kernel is
// reordered into it on every call (a small cost next to the convolution). Compiled primitives
// are kept per shape for the life of the process.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using Shape = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

struct Primitive {
  dnnl::convolution_forward conv;
  dnnl::memory::desc src, dst, user_weights, weights;
  std::unique_ptr<dnnl::reorder> to_weights;  // null when oneDNN reads HWIO as it is
};

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// n, h, w, cin, cout, kh, kw → oneDNN's description of the convolution, NHWC in and out, the
// weights' layout left to oneDNN.
dnnl::convolution_forward::primitive_desc Describe(const Shape& shape) {
  auto [n, h, w, cin, cout, kh, kw] = shape;
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
      dnnl::memory::desc({n, cin, h, w}, dt::f32, tag::nhwc),
      dnnl::memory::desc({cout, cin, kh, kw}, dt::f32, tag::any),
      dnnl::memory::desc({n, cout, h, w}, dt::f32, tag::nhwc), {1, 1}, {kh / 2, kw / 2},
      {kh / 2, kw / 2});
}

// The compiled convolution for a shape (made once per shape).
Primitive& PrimitiveFor(const Shape& shape) {
  static std::mutex mutex;
  static std::map<Shape, std::unique_ptr<Primitive>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = cache.find(shape);
  if (found != cache.end()) return *found->second;
  auto [n, h, w, cin, cout, kh, kw] = shape;
  auto pd = Describe(shape);
  auto p = std::make_unique<Primitive>();
  p->src = pd.src_desc();
  p->dst = pd.dst_desc();
  p->user_weights = dnnl::memory::desc({cout, cin, kh, kw}, dt::f32, tag::hwio);
  p->conv = dnnl::convolution_forward(pd);
  p->weights = pd.weights_desc();
  if (p->weights != p->user_weights) {
    p->to_weights = std::make_unique<dnnl::reorder>(
        dnnl::reorder::primitive_desc(Engine(), p->user_weights, Engine(), p->weights));
  }
  Primitive& result = *p;
  cache.emplace(shape, std::move(p));
  return result;
}

ffi::Error Conv(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> k,
                ffi::ResultBuffer<ffi::F32> y) {
  auto xd = x.dimensions();
  auto kd = k.dimensions();
  if (xd.size() != 4 || kd.size() != 4 || kd[2] != xd[3] || kd[0] % 2 == 0 || kd[1] % 2 == 0) {
    return ffi::Error::InvalidArgument(
        "jaxviz_onednn_conv: needs x [N, H, W, Cin] and an odd kernel [kh, kw, Cin, Cout]");
  }
  try {
    Primitive& p = PrimitiveFor({xd[0], xd[1], xd[2], xd[3], kd[3], kd[0], kd[1]});
    dnnl::stream stream(Engine());
    dnnl::memory src(p.src, Engine(), x.typed_data());
    dnnl::memory dst(p.dst, Engine(), y->typed_data());
    dnnl::memory weights(p.user_weights, Engine(), k.typed_data());
    if (p.to_weights) {
      dnnl::memory reordered(p.weights, Engine());
      p.to_weights->execute(stream, weights, reordered);
      weights = reordered;
    }
    p.conv.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}});
    stream.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("jaxviz_onednn_conv: ") + e.what());
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxvizOnednnConv, Conv,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

// Which oneDNN implementation serves a 3×3 convolution of this shape (e.g. "brgconv:avx512_core"):
// for `jaxviz bench` and for checking that no reference (slow) kernel is used.
extern "C" const char* JaxvizOnednnImplementation(int64_t n, int64_t h, int64_t w, int64_t cin,
                                                  int64_t cout) {
  static thread_local std::string name;
  try {
    name = Describe({n, h, w, cin, cout, 3, 3}).impl_info_str();
  } catch (const dnnl::error& e) {
    name = std::string("error: ") + e.what();
  }
  return name.c_str();
}
