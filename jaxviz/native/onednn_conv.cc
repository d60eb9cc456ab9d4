// jaxviz's oneDNN convolution, called from XLA through the FFI (jax.ffi).
//
// y = conv(x, k): a 'same', stride-1 2-D convolution of float32 images x [N, H, W, Cin] (NHWC)
// with an odd kernel k [kh, kw, Cin, Cout] (HWIO), giving y [N, H, W, Cout] (NHWC), exactly what
// jaxviz.models.layers.conv_same computes. oneDNN picks the kernel's layout; the kernel is
// reordered into it on every call (a small cost next to the convolution). Compiled primitives
// are kept per shape for the life of the process.
//
// Two targets: JaxvizOnednnConv computes in float32; JaxvizOnednnConvBf16 rounds x and k to
// bfloat16 (8-bit mantissa) and accumulates in float32, which CPUs with AMX or AVX-512 BF16 run
// several times faster. Both read and write float32.

#include <cstdint>
#include <map>
#include <vector>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// n, h, w, cin, cout, kh, kw, and whether x and k are rounded to bfloat16.
using Shape = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool>;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

struct Primitive {
  dnnl::convolution_forward conv;
  dnnl::memory::desc user_src, src, dst, user_weights, weights;
  dnnl::memory::desc scratchpad, to_src_scratchpad, to_weights_scratchpad;
  std::unique_ptr<dnnl::reorder> to_src;      // null when oneDNN reads x as it is
  std::unique_ptr<dnnl::reorder> to_weights;  // null when oneDNN reads HWIO as it is
};

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// Every primitive's scratchpad is the caller's (`Conv` keeps one per thread): oneDNN's own is
// shared by all primitives, so two devices calling at once (a host split into one device per
// core, `jaxviz.host_devices`) would write into the same memory.
dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// This thread's scratchpad memory for `desc`, grown to the largest any primitive has needed.
dnnl::memory ScratchpadFor(const dnnl::memory::desc& desc) {
  thread_local std::vector<char> scratch;
  if (scratch.size() < desc.get_size()) scratch.resize(desc.get_size());
  return dnnl::memory(desc, Engine(), scratch.data());
}

// The shape → oneDNN's description of the convolution, NHWC in and out (float32 out), the
// weights' layout left to oneDNN.
dnnl::convolution_forward::primitive_desc Describe(const Shape& shape) {
  auto [n, h, w, cin, cout, kh, kw, bf16] = shape;
  const dt inputs = bf16 ? dt::bf16 : dt::f32;
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
      dnnl::memory::desc({n, cin, h, w}, inputs, tag::nhwc),
      dnnl::memory::desc({cout, cin, kh, kw}, inputs, tag::any),
      dnnl::memory::desc({n, cout, h, w}, dt::f32, tag::nhwc), {1, 1}, {kh / 2, kw / 2},
      {kh / 2, kw / 2}, UserScratchpad());
}

// The compiled convolution for a shape (made once per shape).
Primitive& PrimitiveFor(const Shape& shape) {
  static std::mutex mutex;
  static std::map<Shape, std::unique_ptr<Primitive>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = cache.find(shape);
  if (found != cache.end()) return *found->second;
  auto [n, h, w, cin, cout, kh, kw, bf16] = shape;
  auto pd = Describe(shape);
  auto p = std::make_unique<Primitive>();
  p->user_src = dnnl::memory::desc({n, cin, h, w}, dt::f32, tag::nhwc);
  p->src = pd.src_desc();
  if (p->src != p->user_src) {
    auto rd = dnnl::reorder::primitive_desc(Engine(), p->user_src, Engine(), p->src,
                                            UserScratchpad());
    p->to_src_scratchpad = rd.scratchpad_desc();
    p->to_src = std::make_unique<dnnl::reorder>(rd);
  }
  p->dst = pd.dst_desc();
  p->scratchpad = pd.scratchpad_desc();
  p->user_weights = dnnl::memory::desc({cout, cin, kh, kw}, dt::f32, tag::hwio);
  p->conv = dnnl::convolution_forward(pd);
  p->weights = pd.weights_desc();
  if (p->weights != p->user_weights) {
    auto rd = dnnl::reorder::primitive_desc(Engine(), p->user_weights, Engine(), p->weights,
                                            UserScratchpad());
    p->to_weights_scratchpad = rd.scratchpad_desc();
    p->to_weights = std::make_unique<dnnl::reorder>(rd);
  }
  Primitive& result = *p;
  cache.emplace(shape, std::move(p));
  return result;
}

template <bool kBf16>
ffi::Error Conv(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> k,
                ffi::ResultBuffer<ffi::F32> y) {
  auto xd = x.dimensions();
  auto kd = k.dimensions();
  if (xd.size() != 4 || kd.size() != 4 || kd[2] != xd[3] || kd[0] % 2 == 0 || kd[1] % 2 == 0) {
    return ffi::Error::InvalidArgument(
        "jaxviz_onednn_conv: needs x [N, H, W, Cin] and an odd kernel [kh, kw, Cin, Cout]");
  }
  try {
    Primitive& p = PrimitiveFor({xd[0], xd[1], xd[2], xd[3], kd[3], kd[0], kd[1], kBf16});
    dnnl::stream stream(Engine());
    dnnl::memory src(p.user_src, Engine(), x.typed_data());
    if (p.to_src) {
      dnnl::memory rounded(p.src, Engine());
      p.to_src->execute(stream, {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, rounded},
                                 {DNNL_ARG_SCRATCHPAD, ScratchpadFor(p.to_src_scratchpad)}});
      src = rounded;
    }
    dnnl::memory dst(p.dst, Engine(), y->typed_data());
    dnnl::memory weights(p.user_weights, Engine(), k.typed_data());
    if (p.to_weights) {
      dnnl::memory reordered(p.weights, Engine());
      p.to_weights->execute(stream, {{DNNL_ARG_FROM, weights}, {DNNL_ARG_TO, reordered},
                                     {DNNL_ARG_SCRATCHPAD,
                                      ScratchpadFor(p.to_weights_scratchpad)}});
      weights = reordered;
    }
    p.conv.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst},
                            {DNNL_ARG_SCRATCHPAD, ScratchpadFor(p.scratchpad)}});
    stream.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("jaxviz_onednn_conv: ") + e.what());
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxvizOnednnConv, Conv<false>,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxvizOnednnConvBf16, Conv<true>,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

// Which oneDNN implementation serves a 3×3 convolution of this shape (e.g. "brgconv:avx512_core"),
// in float32 (bf16 = 0) or bfloat16 (bf16 = 1): for `jaxviz bench` and for checking that no
// reference (slow) kernel is used.
extern "C" const char* JaxvizOnednnImplementation(int64_t n, int64_t h, int64_t w, int64_t cin,
                                                  int64_t cout, int32_t bf16) {
  static thread_local std::string name;
  try {
    name = Describe({n, h, w, cin, cout, 3, 3, bf16 != 0}).impl_info_str();
  } catch (const dnnl::error& e) {
    name = std::string("error: ") + e.what();
  }
  return name.c_str();
}
