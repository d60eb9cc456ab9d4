"""Writes a Keras model's weights in the Keras 2 layout of the published ImageNet files.

`vgg16_weights_tf_dim_ordering_tf_kernels[_notop].h5` were written by Keras' `save_weights`
with TensorFlow variable names: root attributes `layer_names` (every layer, weighted or not,
as fixed-length bytes), `backend` and `keras_version`; one group per layer whose attribute
`weight_names` lists its datasets, `<layer>_W_1:0` (kernel, HWIO) and `<layer>_b_1:0` (bias),
stored directly in the group. Keras 3 cannot write this layout, so it is written with h5py.
"""

from __future__ import annotations

import h5py
import numpy as np


def write_keras2_weights(path, layers) -> None:
  """`layers`: `[(name, [kernel, bias] or [])]` in model order, arrays as numpy."""
  with h5py.File(path, "w") as f:
    # Fixed-length byte strings, as h5py 2 stored the lists Keras 2 gave it.
    f.attrs["layer_names"] = np.array([name.encode("utf8") for name, _ in layers])
    f.attrs["backend"] = b"tensorflow"
    f.attrs["keras_version"] = b"2.0.8"
    for name, weights in layers:
      group = f.create_group(name)
      weight_names = [f"{name}_{kind}_1:0".encode("utf8")
                      for kind, _ in zip(("W", "b"), weights)]
      group.attrs["weight_names"] = np.array(weight_names) if weight_names else np.array([])
      for weight_name, value in zip(weight_names, weights):
        group.create_dataset(weight_name, data=np.asarray(value))


def keras_model_layers(model) -> list[tuple[str, list[np.ndarray]]]:
  """`[(name, weights)]` of a Keras model, its input layer named `input_1` as in Keras 2."""
  return [("input_1" if layer.__class__.__name__ == "InputLayer" else layer.name,
           [np.asarray(w) for w in layer.get_weights()]) for layer in model.layers]


def spec_layers(spec, params) -> list[tuple[str, list[np.ndarray]]]:
  """`[(name, weights)]` for jaxviz `params` of model `spec`, in Keras' layer order."""
  return [("input_1", [])] + [
      (name, [np.asarray(params[name]["kernel"]), np.asarray(params[name]["bias"])]
       if name in params else []) for name in spec.layer_names]


def write_legacy_nested(path, models) -> None:
  """A legacy full-model `.h5` (`model.save("x.h5")`) of a model made of nested models:
  `models` is `[(model name, [(layer name, [kernel, bias] or [])])]`. As Keras writes it, each
  nested model is one group under `model_weights` whose `weight_names` list
  `<layer>/kernel`, `<layer>/bias` in layer order, each stored at `<model>/<layer>/<var>`."""
  with h5py.File(path, "w") as f:
    weights = f.create_group("model_weights")
    weights.attrs["layer_names"] = np.array([name.encode("utf8") for name, _ in models])
    for model_name, layers in models:
      group = weights.create_group(model_name)
      names = []
      for name, values in layers:
        for var, value in zip(("kernel", "bias"), values):
          names.append(f"{name}/{var}".encode("utf8"))
          group.create_dataset(f"{name}/{var}", data=np.asarray(value))
      group.attrs["weight_names"] = np.array(names)
