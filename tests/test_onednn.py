"""The oneDNN convolution (jaxviz/native, through XLA's FFI) equals XLA's, in every way the
engine uses it: alone, under vmap, differentiated, and in a whole ascent."""

import dataclasses
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz import kernels, onednn
from jaxviz.ascent import AscentSettings
from jaxviz.engine import FilterEngine
from jaxviz.errors import JaxvizError
from jaxviz.forward import forward
from jaxviz.models import get_spec
from jaxviz.models import layers as L
from jaxviz.models.layers import conv_same
from jaxviz.models.spec import Model, ModelSpec

needs_onednn = pytest.mark.skipif(not onednn.available(),
                                  reason=f"oneDNN unavailable: {onednn.unavailable_reason()}")
needs_bf16 = pytest.mark.skipif(not (onednn.available() and onednn.bf16_fast()),
                                reason="no oneDNN, or no AMX / AVX-512 BF16 on this CPU")


def wide_spec() -> ModelSpec:
  """Enough channels that the middle convolutions (and their input gradients) go to oneDNN, some
  in bfloat16 under 'onednn_bf16' (64 input channels), some not (16)."""
  layers = (L.Conv("c1", 16, (3, 3), "relu"), L.Conv("c2", 64, (3, 3), "relu"), L.MaxPool("p1"),
            L.Conv("c3", 64, (5, 5), "relu"), L.Conv("c4", 20, (3, 3), "relu"))
  return ModelSpec("wide", layers, (20, 20, 3), False, 0, lambda p: p, lambda x: x)


def wide_engine(conv: str) -> tuple[Model, FilterEngine]:
  """`wide_spec` with random weights, and an engine for its last layer (6 steps) on `conv`."""
  spec = wide_spec()
  model = Model(spec, spec.init_params(jax.random.key(0)))
  engine = FilterEngine(model, "c4", AscentSettings(steps=6, robustness_samples=0, conv=conv))
  assert engine.ascent.conv == conv
  return model, engine


def random(shape, seed):
  return jax.random.normal(jax.random.key(seed), shape)


@needs_onednn
@pytest.mark.parametrize("shape", [(1, 8, 8, 16, 16), (3, 7, 9, 32, 20), (2, 4, 4, 64, 128),
                                   (2, 9, 7, 1, 20)])
@pytest.mark.parametrize("kernel_side", [3, 5])
def test_equals_xla_convolution(shape, kernel_side):
  n, h, w, cin, cout = shape
  x, k = random((n, h, w, cin), 0), random((kernel_side, kernel_side, cin, cout), 1)
  np.testing.assert_allclose(jax.jit(onednn.conv_same)(x, k), conv_same(x, k),
                             rtol=1e-5, atol=1e-4)


@needs_onednn
def test_under_vmap_shared_and_per_image_kernels():
  x = random((3, 2, 6, 6, 16), 0)
  shared, own = random((3, 3, 16, 24), 1), random((3, 3, 3, 16, 24), 2)
  np.testing.assert_allclose(jax.vmap(onednn.conv_same, in_axes=(0, None))(x, shared),
                             jax.vmap(conv_same, in_axes=(0, None))(x, shared),
                             rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(jax.vmap(onednn.conv_same)(x, own), jax.vmap(conv_same)(x, own),
                             rtol=1e-5, atol=1e-4)
  nested = jax.vmap(jax.vmap(onednn.conv_same, in_axes=(0, None)), in_axes=(0, None))
  np.testing.assert_allclose(nested(x[:, :, None], shared)[:, :, 0],
                             jax.vmap(conv_same, in_axes=(0, None))(x, shared),
                             rtol=1e-5, atol=1e-4)
  hlo = jax.jit(jax.vmap(onednn.conv_same, in_axes=(0, None))).lower(x, shared).as_text()
  assert onednn.TARGETS["onednn"][0] in hlo


@needs_onednn
def test_image_gradient_equals_xla():
  x, k = random((2, 9, 9, 16), 0), random((3, 3, 16, 32), 1)
  loss = lambda backend: lambda x: jnp.sum(jnp.sin(kernels.conv(x, k, backend)))
  np.testing.assert_allclose(jax.grad(loss("onednn"))(x), jax.grad(loss("xla"))(x),
                             rtol=1e-4, atol=1e-4)


@needs_onednn
def test_forward_with_onednn_equals_the_reference():
  spec = wide_spec()
  params = spec.init_params(jax.random.key(0))
  x = random((2, *spec.input_shape), 1) * 3
  for name in spec.layer_names:
    reference = spec.module.apply({"params": params}, x, upto=name)
    np.testing.assert_allclose(forward(spec, params, x, name, conv="onednn"), reference,
                               rtol=1e-4, atol=1e-4, err_msg=name)


def test_which_convolutions_go_to_onednn():
  x = lambda cin: jnp.zeros((1, 8, 8, cin))
  k = lambda cin, cout: jnp.zeros((3, 3, cin, cout))
  assert onednn.suits(x(16), k(16, 16)) and onednn.suits(x(1), k(1, 20))  # a grey first layer
  assert not onednn.suits(x(3), k(3, 64))   # a colour first layer: XLA's is faster
  assert not onednn.suits(x(64), k(64, 1))  # one output channel: `kernels.conv_to_one_channel`
  assert not onednn.suits(x(64), k(64, 8))


@needs_onednn
def test_lenet_forward_and_gradient_with_onednn_equal_the_reference():
  spec = get_spec("lenet")
  params = spec.init_params(jax.random.key(0))
  x = random((2, *spec.input_shape), 1)
  for name in ("conv2d_1", "conv2d_2", "dense_2"):
    loss = lambda f: lambda x: jnp.sum(jnp.sin(f(x)))
    ours = lambda x: forward(spec, params, x, name, conv="onednn")
    reference = lambda x: spec.module.apply({"params": params}, x, upto=name)
    np.testing.assert_allclose(ours(x), reference(x), rtol=1e-4, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(jax.grad(loss(ours))(x), jax.grad(loss(reference))(x),
                               rtol=1e-4, atol=1e-4, err_msg=name)


@needs_onednn
def test_engine_filter_alone_equals_its_row_and_matches_xla():
  model, engine = wide_engine("onednn")
  everything = engine.run("0-7", seed=3)
  for k in (0, 5):
    alone = engine.run([k], seed=3)
    np.testing.assert_allclose(alone.images[0], everything.images[k], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(alone.activations[0], everything.activations[k], rtol=1e-5)
  xla_settings = dataclasses.replace(engine.settings, conv="xla")
  xla = FilterEngine(model, "c4", xla_settings).run("0-7", seed=3)
  np.testing.assert_allclose(everything.activations, xla.activations, rtol=1e-3, atol=1e-3)
  before = engine.traces
  engine.run("0-7", seed=4)
  assert engine.traces == before


@needs_bf16
@pytest.mark.parametrize("shape", [(1, 8, 8, 16, 16), (3, 7, 9, 32, 20)])
def test_bf16_is_the_float32_conv_of_inputs_rounded_to_bfloat16(shape):
  # A product of two bfloat16 numbers is exact in float32, so only the order of the float32
  # sums differs from XLA's conv of the rounded inputs.
  n, h, w, cin, cout = shape
  x, k = random((n, h, w, cin), 0), random((3, 3, cin, cout), 1) * 0.1
  rounded = lambda a: a.astype(jnp.bfloat16).astype(jnp.float32)
  y = jax.jit(lambda x, k: onednn.conv_same(x, k, "onednn_bf16"))(x, k)
  np.testing.assert_allclose(y, conv_same(rounded(x), rounded(k)), rtol=1e-5, atol=1e-5)
  assert float(jnp.max(jnp.abs(y - conv_same(x, k)))) > 1e-4  # it did round
  served_by = onednn.implementation(n, h, w, cin, cout, bf16=True)
  assert "bf16" in served_by or "amx" in served_by


@needs_bf16
def test_bf16_engine_keeps_the_contract_and_reports_in_float32():
  model, engine = wide_engine("onednn_bf16")
  everything = engine.run("0-7", seed=3)
  alone = engine.run([5], seed=3)
  np.testing.assert_allclose(alone.images[0], everything.images[5], rtol=1e-5, atol=1e-5)
  # The reported activation is the float32 forward pass of the final image.
  exact = forward(model.spec, model.params, jnp.asarray(everything.images), "c4", conv="xla")
  np.testing.assert_allclose(everything.final_activations, exact.mean(axis=(1, 2)).diagonal(),
                             rtol=1e-5, atol=1e-5)


def test_bf16_only_from_64_input_channels():
  # Thin convolutions (a grey model's, LeNet's 20 channels) stay float32 under bfloat16.
  kernel = lambda cin: jnp.zeros((3, 3, cin, 64))
  assert onednn.precision("onednn_bf16", kernel(64)) == "onednn_bf16"
  assert onednn.precision("onednn_bf16", kernel(63)) == "onednn"
  assert onednn.precision("onednn_bf16", kernel(1)) == "onednn"
  assert onednn.precision("onednn", kernel(512)) == "onednn"


@needs_bf16
def test_lenet_steps_are_float32_under_bf16():
  # No LeNet convolution has 64 input channels: bfloat16 (what `auto` is on this CPU) changes
  # none of its images.
  spec = get_spec("lenet")
  model = Model(spec, spec.init_params(jax.random.key(0)))
  images = {conv: FilterEngine(model, "conv2d_2", AscentSettings(steps=3, conv=conv)).run(
      "0-3").images for conv in ("onednn", "onednn_bf16")}
  np.testing.assert_array_equal(images["onednn"], images["onednn_bf16"])


def test_resolve():
  assert onednn.resolve("xla") == "xla"
  fast = "onednn_bf16" if onednn.bf16_fast() else "onednn"
  assert onednn.resolve("auto") == (fast if onednn.available() else "xla")
  with pytest.raises(JaxvizError, match="unknown conv backend"):
    onednn.resolve("mkl")
  with pytest.raises(JaxvizError, match="unknown conv"):
    AscentSettings(conv="cudnn").validate()


def test_unavailable_onednn_is_a_clear_error_and_auto_falls_back(tmp_path):
  """With no oneDNN where JAXVIZ_ONEDNN_ROOT points, `auto` is XLA and `onednn` says why."""
  code = ("from jaxviz import onednn\n"
          "from jaxviz.errors import JaxvizError\n"
          "print(onednn.resolve('auto'))\n"
          "for backend in ('onednn', 'onednn_bf16'):\n"
          "  try:\n    onednn.resolve(backend)\n  except JaxvizError as e:\n    print(e)\n")
  env = {**os.environ, "JAXVIZ_ONEDNN_ROOT": str(tmp_path), "JAXVIZ_CACHE": str(tmp_path)}
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       check=True).stdout.splitlines()
  assert out[0] == "xla"
  assert "conv=onednn is unavailable" in out[1] and "pip install onednn-cpu-gomp" in out[1]
  assert "conv=onednn_bf16 is unavailable" in out[2]


@needs_onednn
def test_built_once_per_machine():
  path = onednn._build()
  stamp = path.stat().st_mtime_ns
  assert onednn._build() == path and path.stat().st_mtime_ns == stamp
  assert "ref" not in onednn.implementation(16, 8, 8, 512, 512)  # a real (jit) kernel serves it
