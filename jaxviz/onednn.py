"""oneDNN convolutions for the engine on CPUs, called from the compiled program through XLA's FFI.

XLA:CPU's convolutions reach about half of the matmul peak on VGG16's shapes; oneDNN's reach
1.2–2.7× their speed on the same shapes (BENCHMARKS.md, "oneDNN convolutions"). The handler,
`jaxviz/native/onednn_conv.cc`, is compiled once per machine with its C++ compiler against the
oneDNN wheels (`onednn-cpu-gomp`, headers from `onednn-devel-cpu-gomp`) and JAX's FFI headers,
and kept in the jaxviz cache (`native/`). Where any of these is missing, `unavailable_reason()`
says which, and the `auto` backend is XLA's convolution: the images are the same to float
rounding either way.

Only the engine's forward pass (`jaxviz.forward`) uses it, and only for convolutions with at
least `MIN_CHANNELS` output channels and as many input channels, or a single one (a colour first
layer's 3 input channels and a single target channel are faster in XLA), on CPU devices. XLA
cannot split a custom call across devices; the engine never asks it to, since each device runs
its own slice of the filters (`shard_map`). On a host split into one device per core
(`jaxviz.host_devices`) the devices call oneDNN at the same time: each call brings its own
scratchpad, and each device's oneDNN runs on its own share of the cores (`OMP_NUM_THREADS`, set
by the split).

The backend `onednn_bf16` rounds each convolution's inputs to bfloat16 and accumulates in
float32: on CPUs with AMX or AVX-512 BF16 oneDNN runs it several times faster. The engine uses
it for the ascent's steps only; what it reports (activation, robustness) is computed in float32
(`exact`). Only convolutions with at least `BF16_MIN_CHANNELS` input channels take it (a grey
model's steps stay float32). `auto` is this backend on such CPUs: the default's pictures
measured as good as in float32 on VGG16 (QUALITY.md) in under half the time.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp

from jaxviz import cache
from jaxviz.errors import JaxvizError, unknown
from jaxviz.models.layers import conv_same as xla_conv_same

BACKENDS = ("auto", "xla", "onednn", "onednn_bf16")
MIN_CHANNELS = 16
# Convolutions with fewer input channels stay in float32 under 'onednn_bf16': thin ones gain
# little from bfloat16 (their time is overhead), and a grey model's steps stay float32.
BF16_MIN_CHANNELS = 64
# The FFI target of each oneDNN backend, and the handler symbol that serves it.
TARGETS = {"onednn": ("jaxviz_onednn_conv", "JaxvizOnednnConv"),
           "onednn_bf16": ("jaxviz_onednn_conv_bf16", "JaxvizOnednnConvBf16")}
SOURCE = Path(__file__).parent / "native" / "onednn_conv.cc"
_RUNTIME, _HEADERS = "onednn-cpu-gomp", "onednn-devel-cpu-gomp"


def _wheel_file(distribution: str, name: str) -> Path | None:
  """The installed file `name` (a path suffix) of a pip distribution, if there is one."""
  try:
    files = importlib.metadata.files(distribution) or []
  except importlib.metadata.PackageNotFoundError:
    return None
  for f in files:
    if str(f).replace("\\", "/").endswith(name):
      return Path(f.locate()).resolve()
  return None


def _toolchain() -> tuple[str, Path, Path]:
  """(compiler, oneDNN include dir, directory of libdnnl.so.3); `JaxvizError` naming what is
  missing otherwise."""
  if not (sys.platform.startswith("linux") and os.uname().machine == "x86_64"):
    raise JaxvizError("the oneDNN wheels jaxviz uses exist for x86-64 Linux only")
  root = os.environ.get("JAXVIZ_ONEDNN_ROOT")
  if root:
    header, library = Path(root, "include/oneapi/dnnl/dnnl.hpp"), Path(root, "lib/libdnnl.so.3")
  else:
    header = _wheel_file(_HEADERS, "oneapi/dnnl/dnnl.hpp")
    library = _wheel_file(_RUNTIME, "/libdnnl.so.3")
  if header is None or not header.exists() or library is None or not library.exists():
    raise JaxvizError(f"oneDNN is not installed: pip install {_RUNTIME} {_HEADERS} "
                      "(or set JAXVIZ_ONEDNN_ROOT to a oneDNN 3 install with include/ and lib/)")
  compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
  if not compiler:
    raise JaxvizError("no C++ compiler to build the oneDNN convolution: install g++ "
                      "(Debian: apt-get install g++) or set CXX")
  return compiler, header.parents[2], library.parent


def _build() -> Path:
  """Compiles the handler into the cache (once per source, toolchain and jaxlib) → its path."""
  compiler, include, libdir = _toolchain()
  source = SOURCE.read_bytes()
  digest = hashlib.sha256(b"\0".join([
      source, str(include).encode(), str(libdir).encode(), compiler.encode(),
      importlib.metadata.version("jaxlib").encode()])).hexdigest()[:16]
  target = cache.cache_dir() / "native" / f"onednn-{digest}" / "libjaxviz_onednn.so"
  if target.exists():
    return target
  target.parent.mkdir(parents=True, exist_ok=True)
  print("jaxviz: compiling the oneDNN convolution (once per machine, a few seconds)",
        file=sys.stderr, flush=True)
  with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".so", delete=False) as tmp:
    partial = Path(tmp.name)
  command = [compiler, "-O2", "-std=c++17", "-shared", "-fPIC", "-w", f"-I{include}",
             f"-I{jax.ffi.include_dir()}", str(SOURCE), f"-L{libdir}", "-l:libdnnl.so.3",
             f"-Wl,-rpath,{libdir}", "-o", str(partial)]
  try:
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
      raise JaxvizError("building the oneDNN convolution failed: "
                        + (done.stderr.strip().splitlines() or ["(no output)"])[-1])
    os.replace(partial, target)  # atomic: a concurrent build never leaves a partial library
  finally:
    partial.unlink(missing_ok=True)
  return target


@functools.cache
def _library() -> tuple[ctypes.CDLL | None, str]:
  """Builds (if needed), loads and registers the handler: (the library, '') or (None, why not)."""
  try:
    library = ctypes.CDLL(str(_build()))
    for target, symbol in TARGETS.values():
      jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)),
                                  platform="cpu")
    library.JaxvizOnednnImplementation.restype = ctypes.c_char_p
    library.JaxvizOnednnImplementation.argtypes = [ctypes.c_int64] * 5 + [ctypes.c_int32]
  except (JaxvizError, OSError, subprocess.SubprocessError, AttributeError) as e:
    return None, str(e)
  return library, ""


def available() -> bool:
  """Whether the oneDNN convolution can run here (building it on first call)."""
  return _library()[0] is not None


def unavailable_reason() -> str:
  """Why `available()` is False ('' when it is True)."""
  return _library()[1]


def implementation(n: int, h: int, w: int, cin: int, cout: int, bf16: bool = False) -> str:
  """The oneDNN kernel that serves a 3×3 conv of this shape, e.g. 'brgconv:avx512_core'
  (with `bf16`, the bfloat16 one, e.g. 'brgconv:avx512_core_amx')."""
  if not available():
    return "unavailable: " + unavailable_reason()
  return _library()[0].JaxvizOnednnImplementation(n, h, w, cin, cout, int(bf16)).decode()


@functools.cache
def _bf16_implementation() -> str:
  """The oneDNN kernel that would serve a typical bfloat16 convolution on this CPU."""
  return implementation(4, 16, 16, 256, 256, bf16=True)


def bf16_fast() -> bool:
  """Whether this CPU has a fast bfloat16 convolution (AMX or AVX-512 BF16), not an emulation."""
  return any(isa in _bf16_implementation() for isa in ("amx", "bf16"))


def exact(backend: str) -> str:
  """The float32 backend of the same kind: what reported values are computed with."""
  return "onednn" if backend == "onednn_bf16" else backend


def resolve(requested: str) -> str:
  """The backend a setting means here: 'xla', 'onednn' or 'onednn_bf16'.

  'auto' is 'onednn_bf16' on CPU devices whose oneDNN runs bfloat16 fast (AMX or AVX-512
  BF16), 'onednn' on other CPU devices where it is available, else 'xla'; 'onednn' or
  'onednn_bf16' where it cannot run is a `JaxvizError` with the reason and the fix.
  """
  if requested not in BACKENDS:
    raise unknown("conv backend", requested, BACKENDS)
  if requested == "xla":
    return "xla"
  cpu = jax.default_backend() == "cpu"
  if requested == "auto":
    if not (cpu and available()):
      return "xla"
    return "onednn_bf16" if bf16_fast() else "onednn"
  if not cpu:
    raise JaxvizError(f"conv={requested} runs on CPUs only (this run's devices are "
                      f"{jax.default_backend()} devices): use conv=auto")
  if not available():
    raise JaxvizError(f"conv={requested} is unavailable: {unavailable_reason()}; "
                      "or use conv=xla")
  if requested == "onednn_bf16" and not bf16_fast():
    raise JaxvizError("conv=onednn_bf16 needs a CPU with AMX or AVX-512 BF16; this one would "
                      f"run it as {_bf16_implementation()!r}: use "
                      "conv=onednn")
  return requested


def precision(backend: str, kernel: jax.Array) -> str:
  """The oneDNN backend a convolution by `kernel` `[kh, kw, Cin, Cout]` runs with: 'onednn_bf16'
  only from `BF16_MIN_CHANNELS` input channels on, 'onednn' below."""
  return "onednn" if backend == "onednn_bf16" and kernel.shape[2] < BF16_MIN_CHANNELS \
      else backend


def suits(x: jax.Array, kernel: jax.Array) -> bool:
  """Whether a 'same' conv of `x` `[N, H, W, Cin]` by `kernel` `[kh, kw, Cin, Cout]` goes to
  oneDNN: float32, odd kernel, at least `MIN_CHANNELS` output channels, and as many input
  channels or a single one (a grey model's first layer: LeNet's job 5–9 % faster on a host split
  into one device per core, BENCHMARKS.md)."""
  kh, kw, cin, cout = kernel.shape
  return (x.ndim == 4 and x.dtype == jnp.float32 and kernel.dtype == jnp.float32
          and kh % 2 == 1 and kw % 2 == 1 and cout >= MIN_CHANNELS
          and (cin >= MIN_CHANNELS or cin == 1))


def _make_conv(backend: str):
  """The custom-vmapped FFI call of one oneDNN backend ('onednn' or 'onednn_bf16')."""
  target = TARGETS[backend][0]

  @jax.custom_batching.custom_vmap
  def conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    if not available():
      raise JaxvizError(f"the oneDNN convolution is unavailable: {unavailable_reason()}")
    n, h, w, _ = x.shape
    out = jax.ShapeDtypeStruct((n, h, w, kernel.shape[-1]), jnp.float32)
    return jax.ffi.ffi_call(target, out)(x, kernel)

  @conv.def_vmap
  def _vmap(axis_size, in_batched, x, kernel):
    x_batched, kernel_batched = in_batched
    if kernel_batched:
      if not x_batched:
        x = jnp.broadcast_to(x, (axis_size, *x.shape))
      return jax.vmap(xla_conv_same)(x, kernel), True
    if not x_batched:
      return conv(x, kernel), False
    y = conv(x.reshape(-1, *x.shape[2:]), kernel)
    return y.reshape(axis_size, x.shape[1], *y.shape[1:]), True

  return conv


_CONVS = {backend: _make_conv(backend) for backend in TARGETS}


def conv_same(x: jax.Array, kernel: jax.Array, backend: str = "onednn") -> jax.Array:
  """oneDNN's 'same' stride-1 conv: `x` `[N, H, W, Cin]`, odd `kernel` `[kh, kw, Cin, Cout]` →
  `[N, H, W, Cout]`, as `jaxviz.models.layers.conv_same` (with `backend` 'onednn_bf16', `x`
  and `kernel` rounded to bfloat16 first). Call `available()` first.

  Under `vmap`, images with a shared kernel become one larger batch; a kernel per image (the
  target layer's own channel per filter) goes to XLA's convolution.
  """
  return _CONVS[backend](x, kernel)
