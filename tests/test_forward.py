"""The engine's forward pass (image-only backward kernels) equals the Flax reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz import kernels
from jaxviz.forward import forward, prepare
from jaxviz.models import get_spec
from jaxviz.models import layers as L
from jaxviz.models.spec import ModelSpec


def small_vgg_like() -> ModelSpec:
  layers = (L.Conv("c1", 4, (3, 3), "relu"), L.Conv("c2", 6, (3, 3), "relu"), L.MaxPool("p1"),
            L.Conv("c3", 5, (3, 3), "relu"), L.MaxPool("p2"), L.Flatten("flat"),
            L.Dense("fc", 7, "relu"), L.Dense("out", 3, "softmax"))
  return ModelSpec("small", layers, (14, 14, 3), True, 3, lambda p: p, lambda x: x)


@pytest.mark.parametrize("spec", [get_spec("lenet"), small_vgg_like()], ids=lambda s: s.name)
def test_forward_and_its_gradient_equal_the_reference_at_every_layer(spec):
  params = spec.init_params(jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (2, *spec.input_shape)) * 3
  for name in spec.layer_names:
    for output in ("activation", "pre_activation", "input"):
      def reference(x):
        return spec.module.apply({"params": params}, x, upto=name, output=output)
      def fast(x):
        return forward(spec, params, x, name, output)
      np.testing.assert_allclose(fast(x), reference(x), rtol=1e-5, atol=1e-5)
      loss = lambda f: lambda x: jnp.sum(jnp.sin(f(x)))
      np.testing.assert_allclose(jax.grad(loss(fast))(x), jax.grad(loss(reference))(x),
                                 rtol=1e-4, atol=1e-5, err_msg=f"{name} {output}")


def test_conv_backward_is_the_flipped_kernel_convolution():
  x = jax.random.normal(jax.random.key(0), (1, 5, 6, 2))
  kernel = jax.random.normal(jax.random.key(1), (3, 3, 2, 4))
  g = jax.random.normal(jax.random.key(2), (1, 5, 6, 4))
  _, vjp = jax.vjp(lambda x: L.conv_same(x, kernel), x)
  _, fast_vjp = jax.vjp(lambda x: kernels.conv(x, kernel), x)
  np.testing.assert_allclose(fast_vjp(g)[0], vjp(g)[0], rtol=1e-5, atol=1e-5)


def test_one_output_channel_by_hand():
  # 3×3 ones kernel over 2 channels: each output is the sum of its 'same' neighbourhood.
  x = jnp.arange(2 * 3 * 3, dtype=jnp.float32).reshape(1, 3, 3, 2)
  kernel = jnp.ones((3, 3, 2, 1))
  y = np.asarray(kernels.conv_to_one_channel(x, kernel))[0, ..., 0]
  plane = np.asarray(x[0]).sum(-1)
  padded = np.pad(plane, 1)
  expected = [[padded[i:i + 3, j:j + 3].sum() for j in range(3)] for i in range(3)]
  np.testing.assert_allclose(y, expected)


@pytest.mark.parametrize("shape", [(2, 7, 6, 20, 5), (1, 4, 5, 3, 3)])
def test_one_output_channel_equals_xla_and_so_does_its_gradient(shape):
  n, h, w, cin, k = shape
  x = jax.random.normal(jax.random.key(0), (n, h, w, cin))
  kernel = jax.random.normal(jax.random.key(1), (k, k, cin, 1))
  np.testing.assert_allclose(kernels.conv_to_one_channel(x, kernel), L.conv_same(x, kernel),
                             rtol=1e-5, atol=1e-5)
  g = jax.random.normal(jax.random.key(2), (n, h, w, 1))
  _, vjp = jax.vjp(lambda x: L.conv_same(x, kernel), x)
  _, fast_vjp = jax.vjp(lambda x: kernels.conv(x, kernel), x)  # one channel: the fast path
  np.testing.assert_allclose(fast_vjp(g)[0], vjp(g)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spec", [get_spec("lenet"), small_vgg_like()], ids=lambda s: s.name)
def test_prepared_kernels_give_the_same_gradient(spec):
  params = spec.init_params(jax.random.key(0))
  prepared = prepare(spec, params)
  conv = spec.layer_names[0]
  np.testing.assert_array_equal(prepared[conv]["kernel_backward"],
                                np.swapaxes(np.asarray(params[conv]["kernel"])[::-1, ::-1], 2, 3))
  x = jax.random.normal(jax.random.key(1), (2, *spec.input_shape))
  last = spec.layer_names[-1]
  grad = lambda p: jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(forward(spec, p, x, last)))))(x)
  np.testing.assert_array_equal(grad(prepared), grad(params))


def test_bias_relu_max_pool_equals_pooling_after_the_bias_and_so_does_its_gradient():
  y = jax.random.normal(jax.random.key(0), (2, 7, 6, 5))  # 7 rows: the pool drops the last
  bias = jnp.array([0.5, -0.3, 0.0, 2.0, -4.0])
  reference = lambda y: kernels.max_pool(jax.nn.relu(y + bias))  # JAX's own gradient
  fast = lambda y: kernels.bias_relu_max_pool(y, bias)
  np.testing.assert_allclose(fast(y), reference(y), rtol=1e-6, atol=1e-6)
  g = jax.random.normal(jax.random.key(1), (2, 3, 3, 5))
  np.testing.assert_array_equal(jax.vjp(fast, y)[1](g)[0], jax.vjp(reference, y)[1](g)[0])


def test_relu_max_pool_gradient_by_hand():
  relu_max_pool = lambda y: kernels.bias_relu_max_pool(y, jnp.zeros(1))
  y = jnp.array([[1.0, 3.0, -1.0], [2.0, 0.5, -2.0], [9.0, 9.0, 9.0]]).reshape(1, 3, 3, 1)
  # One 2×2 window (the last row and column are dropped): max 3 at (0, 1).
  assert float(relu_max_pool(y)[0, 0, 0, 0]) == 3.0
  grad = jax.grad(lambda y: jnp.sum(relu_max_pool(y)) * 2.0)(y)[0, :, :, 0]
  np.testing.assert_array_equal(grad, [[0, 2, 0], [0, 0, 0], [0, 0, 0]])
  negative = -jnp.ones((1, 2, 2, 1))
  assert not np.any(jax.grad(lambda y: jnp.sum(relu_max_pool(y)))(negative))
