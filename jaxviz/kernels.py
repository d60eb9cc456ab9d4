"""Operations with image-only backward rules, for gradient ascent on the input.

jaxviz differentiates with respect to the image only, never the weights. XLA:CPU compiles the
generic convolution and max-pool gradients into slower kernels than the forward ones (a
backward conv ran at about half the forward conv's speed, and max-pool's select-and-scatter is
a slow scalar loop). Here both are rewritten as forward operations:

- `conv`: the gradient of a 'same', stride-1 convolution with an odd kernel, with respect to its
  input, is the same convolution of the output gradient with the kernel rotated by 180° and its
  in/out channels swapped.
- `conv_to_one_channel`: a convolution with a single output channel (an input gradient into a
  grey image, or the target filter's own channel) as one matmul to the kernel's taps and a sum
  of shifted planes. XLA:CPU's convolution ran that shape at about a tenth of its speed on wide
  outputs (LeNet's `conv2d_1` input gradient, 20 → 1 channels at 28×28: 58 µs).
- `bias_relu_max_pool`: a per-channel bias, ReLU, then a 2×2/2 max pool, computed after the pool;
  the gradient goes to the positions holding each window's maximum (a compare against the
  upsampled pooled value) where the ReLU was active.
  Windows whose maximum occurs twice at a positive value pass the gradient to both, where XLA
  picks one; for real-valued images that has probability zero, and all-zero windows are masked
  by the ReLU either way.

The weight cotangents returned are zeros: they are never used, and XLA drops them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxviz import onednn
from jaxviz.models.layers import conv_same


def conv_to_one_channel(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`conv_same(x, kernel)` for `x` `[N, H, W, Cin]` and an odd `kernel` `[kh, kw, Cin, 1]`.

  Each position's contribution to every tap, `[N·H·W, Cin] @ [Cin, kh·kw]`, then for each
  output position the sum over taps of its neighbours' contributions (one fused loop).
  """
  kh, kw, cin, _ = kernel.shape
  n, h, w, _ = x.shape
  taps = (x.reshape(-1, cin) @ kernel.reshape(kh * kw, cin).T).reshape(n, h, w, kh, kw)
  taps = jnp.pad(taps, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0), (0, 0)))
  y = sum(taps[:, a:a + h, b:b + w, a, b] for a in range(kh) for b in range(kw))
  return y[..., None]


def _same(x: jax.Array, kernel: jax.Array, backend: str) -> jax.Array:
  """`conv_same` by XLA, or by oneDNN where `backend` is one of oneDNN's and the shapes suit
  it; a single output channel as `conv_to_one_channel`."""
  if backend in onednn.TARGETS and onednn.suits(x, kernel):
    return onednn.conv_same(x, kernel, onednn.precision(backend, kernel))
  if kernel.shape[3] == 1 and kernel.shape[2] > 1:
    return conv_to_one_channel(x, kernel)
  return conv_same(x, kernel)


def backward_kernel(kernel: jax.Array) -> jax.Array:
  """`[kh, kw, Cin, Cout]` → `[kh, kw, Cout, Cin]`: rotated by 180° with in/out swapped, the
  kernel whose 'same' conv of an output gradient is the input gradient."""
  return jnp.swapaxes(kernel[::-1, ::-1], 2, 3)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv(x: jax.Array, kernel: jax.Array, backend: str = "xla",
         kernel_backward: jax.Array | None = None) -> jax.Array:
  """'same' stride-1 conv of `x` `[N, H, W, Cin]` with an odd `kernel` `[kh, kw, Cin, Cout]`;
  `backend` 'xla', 'onednn' or 'onednn_bf16' (`jaxviz.onednn.resolve`) runs it and its input
  gradient.

  `kernel_backward`, if given, is `backward_kernel(kernel)` made ahead of time: inside a step
  loop XLA would otherwise redo that transpose on every step (`jaxviz.forward.prepare`).
  """
  return _same(x, kernel, backend)


def _conv_fwd(x, kernel, backend, kernel_backward):
  return _same(x, kernel, backend), (kernel, kernel_backward)


def _conv_bwd(backend, residuals, g):
  kernel, kernel_backward = residuals
  flipped = backward_kernel(kernel) if kernel_backward is None else kernel_backward
  zeros = lambda a: None if a is None else jnp.zeros_like(a)
  return _same(g, flipped, backend), zeros(kernel), zeros(kernel_backward)


conv.defvjp(_conv_fwd, _conv_bwd)


def max_pool(x: jax.Array, window: int = 2) -> jax.Array:
  """`[N, H, W, C]` → `[N, H // window, W // window, C]` (VALID), as Keras' MaxPooling2D."""
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1),
                               (1, window, window, 1), "VALID")


def _upsample(p: jax.Array, window: int, shape: tuple[int, ...], fill: float) -> jax.Array:
  """Repeats each pooled value over its window; rows and columns the pool dropped get `fill`."""
  up = jnp.repeat(jnp.repeat(p, window, axis=1), window, axis=2)
  pad_h, pad_w = shape[1] - up.shape[1], shape[2] - up.shape[2]
  return jnp.pad(up, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), constant_values=fill)


@jax.custom_vjp
def bias_relu_max_pool(y: jax.Array, bias: jax.Array) -> jax.Array:
  """max_pool(relu(y + bias)) for `y` `[N, H, W, C]` and a per-channel `bias` `[C]`, 2×2
  windows, stride 2, computed as relu(max_pool(y) + bias): adding a constant per channel and
  the ReLU are monotone, so they commute with the window's max and run on the pooled map, a
  quarter of the size. No cotangent for `bias` (zeros): jaxviz never differentiates weights."""
  return jax.nn.relu(max_pool(y) + bias)


def _bias_relu_max_pool_fwd(y, bias):
  m = max_pool(y)
  return jax.nn.relu(m + bias), (y, m, bias)


def _bias_relu_max_pool_bwd(residuals, g):
  y, m, bias = residuals
  winner = (y == _upsample(m, 2, y.shape, -jnp.inf)) & (_upsample(m + bias, 2, y.shape, 0.0) > 0)
  return jnp.where(winner, _upsample(g, 2, y.shape, 0.0), 0.0), jnp.zeros_like(bias)


bias_relu_max_pool.defvjp(_bias_relu_max_pool_fwd, _bias_relu_max_pool_bwd)
