"""The engine's forward pass: the model's layers as plain JAX with image-only gradients.

It computes exactly what `Sequential` computes (tests hold them equal) but uses the operations
of `jaxviz.kernels`, whose backward passes are forward convolutions and compares, and fuses
ReLU with the max pool that follows it. Use it only to differentiate with respect to the input.
"""

from __future__ import annotations

import jax

from jaxviz import kernels
from jaxviz.models import layers as L
from jaxviz.models.spec import ModelSpec, Params


def _odd(layer: L.Conv) -> bool:
  return all(k % 2 == 1 for k in layer.kernel_size)


def conv_layer(x: jax.Array, layer: L.Conv, kernel: jax.Array, bias: jax.Array | None,
               backend: str = "xla", kernel_backward: jax.Array | None = None) -> jax.Array:
  """Pre-activation output of a conv layer, `[N, H, W, Cin]` → `[N, H, W, Cout]` (without the
  bias when `bias` is None); `backend` 'xla' or 'onednn' (`jaxviz.onednn.resolve`);
  `kernel_backward` as `prepare` makes it."""
  y = kernels.conv(x, kernel, backend, kernel_backward) if _odd(layer) else L.conv_same(x, kernel)
  return y if bias is None else y + bias


def prepare(spec: ModelSpec, params: Params) -> Params:
  """`params` with what the backward pass needs made once: each odd-kernel conv layer gains
  `kernel_backward` (`kernels.backward_kernel(kernel)`, `[kh, kw, Cout, Cin]`).

  The engine calls it at the top of its compiled program. Left inside the step loop, XLA
  transposed every kernel again on every step (at VGG16 block5_conv1, 64 px, about 4 % of
  the step).
  """
  prepared = dict(params)
  for layer in spec.layers:
    if isinstance(layer, L.Conv) and _odd(layer) and layer.name in params:
      entry = params[layer.name]
      prepared[layer.name] = {**entry, "kernel_backward": kernels.backward_kernel(entry["kernel"])}
  return prepared


def _relu_then_pool(layers: tuple[L.LayerSpec, ...], i: int, upto: str | None,
                    output: L.Output) -> int:
  """How many layers after conv `i` are a ReLU + 2×2 max pool that can be fused (0, 1 or 2),
  given that nothing between is returned."""
  conv = layers[i]
  rest = layers[i + 1:i + 3]
  if conv.name == upto:
    return 0
  if conv.activation == "relu" and rest[:1] and isinstance(rest[0], L.MaxPool):
    pool = rest[0]
    if pool.window == 2 and not (pool.name == upto and output == "input"):
      return 1
  if (conv.activation is None and len(rest) == 2 and isinstance(rest[0], L.Activation)
      and rest[0].activation == "relu" and isinstance(rest[1], L.MaxPool)
      and rest[1].window == 2 and rest[0].name != upto
      and not (rest[1].name == upto and output == "input")):
    return 2
  return 0


def forward(spec: ModelSpec, params: Params, x: jax.Array, upto: str,
            output: L.Output = "activation", conv: str = "xla") -> jax.Array:
  """Same contract as `spec.module.apply({"params": params}, x, upto=upto, output=output)`:
  the same walk (`layers.walk`), other steps; `conv` the convolution backend ('xla' or
  'onednn', `jaxviz.onednn.resolve`)."""

  def step(layers: tuple[L.LayerSpec, ...], i: int, x: jax.Array):
    layer = layers[i]
    if isinstance(layer, L.Conv):
      p = params[layer.name]
      skip = _relu_then_pool(layers, i, upto, output)
      if skip:  # the bias and ReLU after the max, on the pooled map (`bias_relu_max_pool`)
        y = conv_layer(x, layer, p["kernel"], None, conv, p.get("kernel_backward"))
        return kernels.bias_relu_max_pool(y, p["bias"]), L.identity, 1 + skip
      y = conv_layer(x, layer, p["kernel"], p["bias"], conv, p.get("kernel_backward"))
      return y, lambda v: L.activate(v, layer.activation), 1
    if isinstance(layer, L.Dense):
      y = x @ params[layer.name]["kernel"] + params[layer.name]["bias"]
      return y, lambda v: L.activate(v, layer.activation), 1
    if isinstance(layer, L.Activation):
      return L.activate(x, layer.activation), L.identity, 1
    if isinstance(layer, L.MaxPool):
      return kernels.max_pool(x, layer.window), L.identity, 1
    if isinstance(layer, L.Flatten):
      return x.reshape((x.shape[0], -1)), L.identity, 1
    raise TypeError(f"unknown layer spec {layer!r}")

  return L.walk(spec.layers, x, step, upto, output)
