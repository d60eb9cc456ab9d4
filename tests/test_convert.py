"""Keras files of every layout → jaxviz, checked against Keras itself, and every bad input.

Keras 3 on the JAX backend builds `keras.applications.VGG16` (random weights, fixed seed) and
saves it as `.weights.h5`, `.keras` and legacy `.h5`; the Keras 2 layout of the published
ImageNet files is written with h5py (`keras_layouts`). Each file is converted and the model's
activations are compared with the Keras model's at every layer, on random images.

The top is checked at 64×64 px and 10 classes (same layers and Keras code path, a 2×2×512
`flatten`); the full 224×224, 1000-class model in every layout takes minutes and 4 GB of disk
writes, so it runs only with JAXVIZ_SLOW_TESTS=1.

Also: a VGG16 inside a fine-tuned transfer-learning model, and the same layers renamed, in the
Keras 3 formats; ambiguous or incomplete ones refused; checkpoints written as Flax writes them,
with conversion's peak memory measured in a subprocess; archive members bounded before
extraction.
"""

import dataclasses
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras")

import jaxviz  # noqa: E402
from jaxviz import checkpoint, cli  # noqa: E402
from jaxviz.convert import keras as convert_keras  # noqa: E402
from jaxviz.errors import JaxvizError  # noqa: E402
from jaxviz.models import Model  # noqa: E402
from jaxviz.models import layers as L  # noqa: E402
from jaxviz.models.vgg16 import BASE_LAYERS, VGG16, VGG16_TOP  # noqa: E402
from keras_layouts import (keras_model_layers, spec_layers,  # noqa: E402
                           write_keras2_weights, write_legacy_nested)

LAYOUTS = ("keras2_h5", "weights_h5", "keras", "legacy_h5")
TOLERANCE = 1e-4  # max |jaxviz - keras| / max |keras|, per layer


@dataclasses.dataclass
class Reference:
  """A Keras model, its input batch `x` (preprocessed) and its output at every layer."""
  model: object
  x: np.ndarray
  outputs: dict


def keras_reference(model, size: int, seed: int = 0) -> Reference:
  pixels = np.random.default_rng(seed).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
  x = keras.applications.vgg16.preprocess_input(pixels.copy())
  names = [layer.name for layer in model.layers[1:]]
  probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
  return Reference(model, x, dict(zip(names, probe.predict(x, verbose=0))))


def save_layouts(model, folder: Path) -> dict:
  """The model's weights in the four layouts; returns {layout: path}."""
  paths = {"keras2_h5": folder / "keras2.h5", "weights_h5": folder / "model.weights.h5",
           "keras": folder / "model.keras", "legacy_h5": folder / "legacy.h5"}
  write_keras2_weights(paths["keras2_h5"], keras_model_layers(model))
  model.save_weights(paths["weights_h5"])
  model.save(paths["keras"])
  model.save(paths["legacy_h5"])
  return paths


def assert_matches(model: Model, ref: Reference, layers) -> None:
  for name in layers:
    want = ref.outputs[name]
    got = np.asarray(model.features(ref.x, name))
    assert got.shape == want.shape, name
    scale = np.abs(want).max()
    assert scale > 0, f"{name}: Keras' activations are all zero; the check would be empty"
    err = np.abs(got - want).max() / scale
    assert err <= TOLERANCE, f"{name}: max abs difference {err:.2e} of the activation scale"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
  """Keras' VGG16 without its top, with any input size; 32×32 images."""
  keras.utils.set_random_seed(0)
  model = keras.applications.VGG16(weights=None, include_top=False, input_shape=(None, None, 3))
  ref = keras_reference(model, 32)
  return ref, save_layouts(model, tmp_path_factory.mktemp("vgg16_base"))


# VGG16 with its top at 64×64 px and 10 classes: `fc1` takes the 2×2×512 `block5_pool`.
SMALL_TOP = dataclasses.replace(
    VGG16_TOP, name="vgg16_top_64px", input_shape=(64, 64, 3), num_classes=10,
    layers=BASE_LAYERS + (L.Flatten("flatten"), L.Dense("fc1", 4096, activation="relu"),
                          L.Dense("fc2", 4096, activation="relu"),
                          L.Dense("predictions", 10, activation="softmax")))


@pytest.fixture(scope="module")
def top(tmp_path_factory):
  keras.utils.set_random_seed(1)
  model = keras.applications.VGG16(weights=None, include_top=True, input_shape=(64, 64, 3),
                                   classes=10)
  ref = keras_reference(model, 64)
  return ref, save_layouts(model, tmp_path_factory.mktemp("vgg16_top"))


@pytest.fixture(scope="module")
def base_layers(base):
  """`[(name, [kernel, bias] or [])]` of the base model, for writing altered Keras 2 files."""
  return keras_model_layers(base[0].model)


def test_layer_names_are_keras_names(base, top):
  assert VGG16.layer_names == [layer.name for layer in base[0].model.layers[1:]]
  assert SMALL_TOP.layer_names == [layer.name for layer in top[0].model.layers[1:]]
  assert VGG16_TOP.layer_names == SMALL_TOP.layer_names


@pytest.mark.parametrize("layout", LAYOUTS)
def test_converted_base_matches_keras_at_every_layer(layout, base, tmp_path, capsys):
  ref, paths = base
  out = tmp_path / "vgg16.msgpack"
  assert cli.main(["convert", str(paths[layout]), str(out)]) == 0
  assert capsys.readouterr().out.strip() == str(out)
  model = jaxviz.load_model("vgg16", out)
  assert model.spec is VGG16 and model.layers == VGG16.layer_names
  assert model.metadata["num_classes"] == 0
  assert_matches(model, ref, model.layers)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_keras_file_loads_directly(layout, base):
  ref, paths = base
  model = jaxviz.load_model("vgg16", paths[layout])
  assert model.spec is VGG16
  assert_matches(model, ref, ["block1_conv1", "block5_conv3"])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_top_matches_keras_at_every_conv_layer_and_predictions(layout, top):
  ref, paths = top
  result = convert_keras.read(paths[layout], SMALL_TOP)
  model = Model(result.spec, result.params)
  assert_matches(model, ref, [*SMALL_TOP.conv_layer_names, "fc1", "fc2", "predictions"])


def test_layouts_are_recognized(base):
  _, paths = base
  layouts = {name: convert_keras.read(path, VGG16).layout for name, path in paths.items()}
  assert layouts == {"keras2_h5": "Keras 2 weights .h5", "weights_h5": "Keras 3 .weights.h5",
                     "keras": "Keras 3 .keras archive", "legacy_h5": "legacy full-model .h5"}


def test_keras2_file_is_laid_out_like_the_published_one(base):
  with h5py.File(base[1]["keras2_h5"], "r") as f:
    assert f.attrs["layer_names"].dtype.kind == "S"  # fixed-length bytes
    assert [n.decode() for n in f.attrs["layer_names"]][:4] == [
        "input_1", "block1_conv1", "block1_conv2", "block1_pool"]
    conv = f["block1_conv1"]
    assert [n.decode() for n in conv.attrs["weight_names"]] == [
        "block1_conv1_W_1:0", "block1_conv1_b_1:0"]
    assert conv["block1_conv1_W_1:0"].shape == (3, 3, 3, 64)
    assert len(f["block1_pool"].attrs["weight_names"]) == 0


def strip_layer_names(h5_bytes: bytes) -> bytes:
  """The `.weights.h5` bytes as Keras 3.0–3.5 wrote them: no `name` attribute on `vars`."""
  buffer = io.BytesIO(h5_bytes)
  with h5py.File(buffer, "r+") as f:
    f.visititems(lambda _, obj: obj.attrs.pop("name", None) if "name" in obj.attrs else None)
  return buffer.getvalue()


def test_keras_archive_without_recorded_names_maps_through_its_config(base, tmp_path):
  ref, paths = base
  old = tmp_path / "keras_3_3.keras"
  with zipfile.ZipFile(paths["keras"]) as src, zipfile.ZipFile(old, "w") as dst:
    for name in src.namelist():
      data = src.read(name)
      dst.writestr(name, strip_layer_names(data) if name == "model.weights.h5" else data)
  assert_matches(jaxviz.load_model("vgg16", old), ref, VGG16.conv_layer_names)


def test_weights_h5_without_recorded_names_is_refused(base, tmp_path):
  old = tmp_path / "keras_3_3.weights.h5"
  old.write_bytes(strip_layer_names(base[1]["weights_h5"].read_bytes()))
  with pytest.raises(JaxvizError, match="no recorded name"):
    convert_keras.read(old, VGG16)


@pytest.fixture(scope="module")
def keras_lenet(tmp_path_factory):
  """The seed's LeNet in Keras, with its layer names, saved as `.keras`."""
  keras.utils.set_random_seed(2)
  layers = keras.layers
  model = keras.Sequential([
      keras.Input((28, 28, 1)),
      layers.Conv2D(20, 5, padding="same", name="conv2d_1"),
      layers.Activation("relu", name="activation_1"),
      layers.MaxPooling2D(2, name="max_pooling2d_1"),
      layers.Conv2D(50, 5, padding="same", name="conv2d_2"),
      layers.Activation("relu", name="activation_2"),
      layers.MaxPooling2D(2, name="max_pooling2d_2"),
      layers.Flatten(name="flatten_1"),
      layers.Dense(500, name="dense_1"),
      layers.Activation("relu", name="activation_3"),
      layers.Dense(10, name="dense_2"),
      layers.Activation("softmax", name="activation_4"),
  ])
  path = tmp_path_factory.mktemp("lenet") / "lenet.keras"
  model.save(path)
  return model, path


def test_lenet_keras_file_converts_and_matches(keras_lenet, tmp_path):
  model, path = keras_lenet
  out = tmp_path / "lenet.msgpack"
  assert cli.main(["convert", str(path), str(out), "--model", "lenet"]) == 0
  x = np.random.default_rng(0).uniform(0, 1, (2, 28, 28, 1)).astype(np.float32)
  ours = jaxviz.load_model("lenet", out)
  for name in ("conv2d_2", "dense_2", "activation_4"):
    want = keras.Model(model.inputs, model.get_layer(name).output).predict(x, verbose=0)
    err = np.abs(np.asarray(ours.features(x, name)) - want).max() / np.abs(want).max()
    assert err <= TOLERANCE, name


def test_deflated_keras_archive_reads_the_same(keras_lenet, tmp_path):
  """Keras stores `model.weights.h5` uncompressed; a re-zipped archive goes through a copy."""
  _, path = keras_lenet
  deflated = tmp_path / "deflated.keras"
  with zipfile.ZipFile(path) as src, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as dst:
    for name in src.namelist():
      dst.writestr(name, src.read(name))
  assert zipfile.ZipFile(deflated).getinfo("model.weights.h5").compress_type != zipfile.ZIP_STORED
  want = jaxviz.load_model("lenet", path).params
  got = jaxviz.load_model("lenet", deflated).params
  for layer in want:
    for var in want[layer]:
      np.testing.assert_array_equal(got[layer][var], want[layer][var])


# Bad inputs. Each case writes a file into `folder` (fixtures come from `request`) and returns
# (path, extra CLI arguments, a piece of the expected message).

def another_model(folder, request):
  keras.utils.set_random_seed(3)
  model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4), keras.layers.Dense(2)])
  path = folder / "other.keras"
  model.save(path)
  return path, [], "a Keras file of another model"


def altered_keras2(folder, request, change):
  """The base model in the Keras 2 layout, its `[(name, weights)]` list passed through `change`."""
  path = folder / "altered.h5"
  write_keras2_weights(path, change(list(request.getfixturevalue("base_layers"))))
  return path


def missing_layer(folder, request):
  def drop(layers):
    return [(name, weights) for name, weights in layers if name != "block5_conv3"]
  return (altered_keras2(folder, request, drop), [],
          "missing layers ['block5_conv3'], unexpected layers []")


def renamed(layers, prefix="c"):
  """The weighted layers of `layers` renamed `<prefix>1`, `<prefix>2`, …; others dropped."""
  weighted = [weights for _, weights in layers if weights]
  return [(f"{prefix}{i}", weights) for i, weights in enumerate(weighted, 1)]


def twelve_convs(folder, request):
  def drop(layers):
    return [layer for i, layer in enumerate(renamed(layers)) if i != 6]
  return (altered_keras2(folder, request, drop), [],
          "the file holds 12 convolutions (VGG16 has 13)")


def renamed_wrong_shape(folder, request):
  def narrow(layers):
    return [(name, [w[0][:, :, :128], w[1]] if name == "c6" else w)
            for name, w in renamed(layers)]
  return (altered_keras2(folder, request, narrow), [],
          "the longest run fitting VGG16 is 5 layers, from c1; then c6 has")


def two_renamed_backbones(folder, request):
  return (altered_keras2(folder, request, lambda ls: renamed(ls, "a") + renamed(ls, "b")), [],
          "2 runs of 13 convolutions with VGG16's shapes were found (starting at a1 and b1)")


def two_named_backbones(folder, request):
  path = folder / "siamese.h5"
  layers = [(name, w) for name, w in request.getfixturevalue("base_layers") if w]
  write_legacy_nested(path, [("vgg16", layers), ("vgg16_1", layers)])
  return (path, [], "layer 'block1_conv1' appears twice in this file "
          "(at vgg16/block1_conv1 and vgg16_1/block1_conv1)")


def shape_mismatch(folder, request):
  def narrow(layers):
    return [(name, [weights[0][:, :, :128], weights[1]] if name == "block3_conv2" else weights)
            for name, weights in layers]
  return (altered_keras2(folder, request, narrow), [],
          "layer 'block3_conv2' kernel: model 'vgg16' (without its top) expects "
          "(3, 3, 256, 256), the file has (3, 3, 128, 256)")


def wrong_model(folder, request):
  path = altered_keras2(folder, request, lambda layers: layers)
  return path, ["--model", "lenet"], "holds the weights of model 'vgg16'"


def lenet_as_vgg16(folder, request):
  return request.getfixturevalue("keras_lenet")[1], [], "holds the weights of model 'lenet'"


def truncated(layout):
  def case(folder, request):
    source = request.getfixturevalue("base")[1][layout]
    data = source.read_bytes()
    path = folder / f"truncated_{source.name}"
    path.write_bytes(data[: len(data) // 2])
    return path, [], "truncated or damaged"
  return case


def not_keras(folder, request):
  path = folder / "notes.h5"
  path.write_text("these are not weights\n")
  return path, [], "not a Keras weights file"


def empty(folder, request):
  path = folder / "empty.keras"
  path.write_bytes(b"")
  return path, [], "an empty file"


def zip_without_weights(folder, request):
  path = folder / "photos.keras"
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("photo.txt", "hello")
  return path, [], "without model.weights.h5"


def hdf5_without_weights(folder, request):
  path = folder / "data.h5"
  with h5py.File(path, "w") as f:
    f["measurements"] = np.arange(10)
  return path, [], "an HDF5 file without Keras weights"


BAD_INPUTS = {
    "not_hdf5_or_zip": not_keras, "empty": empty, "zip_without_weights": zip_without_weights,
    "hdf5_without_weights": hdf5_without_weights, "another_model": another_model,
    "missing_layer": missing_layer, "twelve_convs": twelve_convs,
    "renamed_wrong_shape": renamed_wrong_shape, "two_renamed_backbones": two_renamed_backbones,
    "two_named_backbones": two_named_backbones,
    "shape_mismatch": shape_mismatch, "wrong_model": wrong_model,
    "lenet_as_vgg16": lenet_as_vgg16, "truncated_keras2_h5": truncated("keras2_h5"),
    "truncated_legacy_h5": truncated("legacy_h5"), "truncated_keras": truncated("keras"),
    "truncated_weights_h5": truncated("weights_h5"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_a_clear_error_and_leaves_no_file(case, request, tmp_path, capsys):
  folder, out_dir = tmp_path / "in", tmp_path / "out"
  folder.mkdir()
  out_dir.mkdir()
  path, args, message = BAD_INPUTS[case](folder, request)
  out = out_dir / "vgg16.msgpack"
  assert cli.main(["convert", str(path), str(out), *args]) == 2
  err = capsys.readouterr().err
  assert err.startswith("jaxviz convert: error: ") and message in err and str(path) in err, err
  assert list(out_dir.iterdir()) == []  # no checkpoint, no metadata, no temporary file
  with pytest.raises(JaxvizError, match=re.escape(message)):
    jaxviz.load_model(args[1] if args else "vgg16", path)


def test_output_must_be_a_checkpoint_path(base, tmp_path, capsys):
  out = tmp_path / "vgg16.h5"
  assert cli.main(["convert", str(base[1]["keras2_h5"]), str(out)]) == 2
  assert ".msgpack" in capsys.readouterr().err and not out.exists()


def test_missing_input_file(tmp_path, capsys):
  assert cli.main(["convert", str(tmp_path / "nope.h5"), str(tmp_path / "o.msgpack")]) == 2
  assert "does not exist" in capsys.readouterr().err


def test_channels_first_kernels_get_a_hint(base_layers, tmp_path):
  theano = [(name, [np.transpose(w[0], (3, 2, 0, 1)), w[1]] if name == "block1_conv1" else w)
            for name, w in base_layers]
  path = tmp_path / "th.h5"
  write_keras2_weights(path, theano)
  with pytest.raises(JaxvizError, match="channels-first"):
    convert_keras.read(path, VGG16)


@pytest.mark.skipif(not os.environ.get("JAXVIZ_SLOW_TESTS"),
                    reason="full-size VGG16 with its top (528 MB per file); JAXVIZ_SLOW_TESTS=1")
def test_full_size_top_in_every_layout(tmp_path):
  keras.utils.set_random_seed(4)
  model = keras.applications.VGG16(weights=None, include_top=True)
  ref = keras_reference(model, 224)
  for layout, path in save_layouts(model, tmp_path).items():
    out = tmp_path / f"{layout}.msgpack"
    assert cli.main(["convert", str(path), str(out)]) == 0
    path.unlink()
    converted = jaxviz.load_model("vgg16", out)
    assert converted.spec is VGG16_TOP and converted.spec.num_classes == 1000
    assert_matches(converted, ref, [*VGG16.conv_layer_names, "predictions"])
    out.unlink()


# VGG16 inside other models: the usual transfer-learning model, fine-tuned, in the three
# Keras 3 formats; and the same convolutions renamed, found by order and shape.

KERAS3_FORMATS = ("weights_h5", "keras", "legacy_h5")


def save_keras3(model, folder: Path, stem: str) -> dict:
  paths = {"weights_h5": folder / f"{stem}.weights.h5", "keras": folder / f"{stem}.keras",
           "legacy_h5": folder / f"{stem}.h5"}
  model.save_weights(paths["weights_h5"])
  model.save(paths["keras"])
  model.save(paths["legacy_h5"])
  return paths


@pytest.fixture(scope="module")
def transfer(tmp_path_factory):
  """`Sequential([VGG16 base, Flatten, Dense(10)])` at 32×32, fine-tuned two steps with Adam
  (so the weights differ from their initial values and the files hold an optimizer's state),
  saved in the Keras 3 formats; the reference is the inner VGG16's output at every layer."""
  keras.utils.set_random_seed(5)
  backbone = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
  model = keras.Sequential([backbone, keras.layers.Flatten(), keras.layers.Dense(10)])
  initial = backbone.get_layer("block5_conv3").get_weights()[0].copy()
  rng = np.random.default_rng(5)
  x = keras.applications.vgg16.preprocess_input(rng.uniform(0, 255, (4, 32, 32, 3)))
  model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
  model.fit(x, rng.standard_normal((4, 10)), batch_size=2, epochs=1, verbose=0)
  assert not np.allclose(backbone.get_layer("block5_conv3").get_weights()[0], initial)
  folder = tmp_path_factory.mktemp("transfer")
  return keras_reference(backbone, 32, seed=6), save_keras3(model, folder, "transfer"), folder


@pytest.fixture(scope="module")
def renamed_transfer(transfer):
  """The same network with Keras' default layer names (`conv2d_…`), the VGG16 unnested, and a
  dropout and dense head: nothing is named as in VGG16."""
  ref, _, folder = transfer
  layers = []
  for layer in ref.model.layers[1:]:
    if isinstance(layer, keras.layers.Conv2D):
      layers.append(keras.layers.Conv2D(layer.filters, 3, padding="same", activation="relu"))
    else:
      layers.append(keras.layers.MaxPooling2D(2))
  model = keras.Sequential([keras.Input((32, 32, 3)), *layers, keras.layers.Flatten(),
                            keras.layers.Dropout(0.5), keras.layers.Dense(10)])
  for new, old in zip(layers, ref.model.layers[1:]):
    new.set_weights(old.get_weights())
  assert not {layer.name for layer in model.layers} & set(VGG16.layer_names)
  return ref, save_keras3(model, folder, "renamed")


@pytest.mark.parametrize("layout", KERAS3_FORMATS)
def test_vgg16_inside_a_fine_tuned_transfer_model(layout, transfer, capsys):
  ref, paths, _ = transfer
  model = jaxviz.load_model("vgg16", paths[layout])
  assert model.spec is VGG16  # the Dense(10) head is not VGG16's predictions
  assert_matches(model, ref, VGG16.conv_layer_names)
  err = capsys.readouterr().err
  assert "mapped by name onto model 'vgg16' (without its top)" in err
  lines = [line.strip() for line in err.splitlines()[1:]]
  assert lines == model.metadata["mapping"] and len(lines) == 14, err
  assert sum(line.endswith(f"→ {name}") for line in lines for name in VGG16.conv_layer_names) == 13
  assert [line for line in lines if "dense" in line and line.endswith("→ not used")], err


@pytest.mark.parametrize("layout", KERAS3_FORMATS)
def test_renamed_vgg16_is_mapped_by_order_and_shape(layout, renamed_transfer, tmp_path, capsys):
  ref, paths = renamed_transfer
  out = tmp_path / "vgg16.msgpack"
  assert cli.main(["convert", str(paths[layout]), str(out)]) == 0
  captured = capsys.readouterr()
  assert captured.out.strip() == str(out)
  lines = [line.strip() for line in captured.err.splitlines()[1:]]
  assert "mapped by order and shape onto model 'vgg16' (without its top)" in captured.err
  used = [line.rsplit(" → ", 1)[1] for line in lines if not line.endswith("not used")]
  assert used == VGG16.conv_layer_names, captured.err  # in VGG16's order
  assert len(lines) == 14  # and the head's dense layer, not used
  model = jaxviz.load_model("vgg16", out)
  assert model.spec is VGG16 and len(model.metadata["mapping"]) == 14
  assert_matches(model, ref, VGG16.conv_layer_names)


def test_extra_head_layers_are_not_used_and_reported(base, base_layers, tmp_path, capsys):
  head = ("extra_dense", [np.zeros((512, 10), np.float32), np.zeros(10, np.float32)])
  path = tmp_path / "with_head.h5"
  write_keras2_weights(path, base_layers + [("flatten", []), head])
  model = jaxviz.load_model("vgg16", path)
  assert model.spec is VGG16
  assert_matches(model, base[0], ["block1_conv1", "block5_conv3"])
  assert "  extra_dense → not used" in capsys.readouterr().err.splitlines()


def test_weights_h5_without_layer_order_refuses_layers_it_cannot_place(base_layers, tmp_path):
  """A `.weights.h5` orders layers only within a class: a batch normalization beside renamed
  convolutions could sit between them, so the mapping is refused."""
  path = tmp_path / "bn.weights.h5"
  with h5py.File(path, "w") as f:
    convs = renamed(base_layers)
    for i, (name, (kernel, bias)) in enumerate(convs):
      vars_ = f.create_group(f"layers/conv2d{f'_{i}' if i else ''}/vars")
      vars_.attrs["name"] = name
      vars_["0"], vars_["1"] = kernel, bias
    vars_ = f.create_group("layers/batch_normalization/vars")
    vars_.attrs["name"] = "bn"
    for i in range(4):
      vars_[str(i)] = np.ones(64, np.float32)
  with pytest.raises(JaxvizError, match=r"cannot tell where layers/batch_normalization \(bn\)"):
    jaxviz.load_model("vgg16", path)


# Archives: members are checked on their declared sizes before anything is extracted.

def test_zip_bomb_member_is_refused_before_extraction(tmp_path, monkeypatch):
  path = tmp_path / "bomb.keras"
  with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
    with zf.open(convert_keras.ARCHIVE_WEIGHTS, "w", force_zip64=True) as member:
      block = bytes(1 << 24)
      for _ in range(64):  # 1 GiB of zeros, under 5 MB compressed
        member.write(block)
  assert path.stat().st_size < 8 << 20
  monkeypatch.setattr(convert_keras, "_extract", lambda *args: pytest.fail("extracted"))
  message = (f"{path}: archive member 'model.weights.h5' declares 1.0 GiB uncompressed from "
             r"\d\.\d MiB \(\d+:1\), over jaxviz's bound of 100:1")
  with pytest.raises(JaxvizError, match=message):
    jaxviz.load_model("vgg16", path)


def test_member_over_the_size_bound_is_refused(keras_lenet, monkeypatch, tmp_path, capsys):
  monkeypatch.setattr(convert_keras, "MAX_WEIGHTS_BYTES", 1 << 16)
  path = keras_lenet[1]
  assert cli.main(["convert", str(path), str(tmp_path / "o.msgpack"), "--model", "lenet"]) == 2
  err = capsys.readouterr().err
  assert re.search(f"{re.escape(str(path))}: archive member 'model.weights.h5' declares "
                   r"\d+\.\d MiB uncompressed, over jaxviz's bound of 0\.1 MiB for it; it was "
                   "not extracted", err), err


def test_a_folder_given_as_weights_is_called_a_folder(tmp_path, capsys):
  folder = tmp_path / "weights"
  folder.mkdir()
  (folder / "vgg16.keras").write_bytes(b"")
  for weights in (folder, tmp_path / "model.keras"):
    weights.mkdir(exist_ok=True)
    with pytest.raises(JaxvizError, match="is a folder, not a file: pass the weights file"):
      jaxviz.load_model("vgg16", weights)
  assert cli.main(["convert", str(folder), str(tmp_path / "o.msgpack")]) == 2
  err = capsys.readouterr().err
  assert f"Keras file '{folder}' is a folder" in err and "vgg16.keras" in err, err


# Checkpoints are written one array at a time, byte for byte as Flax writes them.

def flax_bytes(model_name, params, metadata) -> bytes:
  from flax import serialization
  return serialization.msgpack_serialize(
      {"model": model_name, "params": params, "metadata": json.dumps(metadata)})


def test_streamed_checkpoint_is_what_flax_writes(monkeypatch, tmp_path):
  rng = np.random.default_rng(0)
  params = {"b": {"kernel": rng.standard_normal((3, 3, 2, 4), np.float32),
                  "bias": np.full((), 0.5, np.float32)},  # a 16-byte extension
            "a": {"kernel": rng.standard_normal((200, 300), np.float32),  # over 64 KiB
                  "bias": np.arange(5, dtype=np.float64), "mask": np.ones(3, bool)}}
  stream = io.BytesIO()
  checkpoint.write_state(stream, "m", params, json.dumps({"x": 1}))
  assert stream.getvalue() == flax_bytes("m", params, {"x": 1})
  # Functions as leaves are read when written; arrays over the chunk size are split as Flax does.
  from flax import serialization
  monkeypatch.setattr(serialization, "MAX_CHUNK_SIZE", 1000)
  lazy = {layer: {var: (lambda a=a: a) for var, a in variables.items()}
          for layer, variables in params.items()}
  path = checkpoint.save(tmp_path / "m.msgpack", "m", lazy, {"x": 1})
  assert path.read_bytes() == flax_bytes("m", params, {"x": 1})
  restored, metadata = checkpoint.read(path).params, checkpoint.read(path).metadata
  np.testing.assert_array_equal(restored["a"]["kernel"], params["a"]["kernel"])
  assert metadata == {"x": 1} and sorted(p.name for p in tmp_path.iterdir()) == [
      "m.json", "m.msgpack"]


def test_loading_a_checkpoint_reads_it_once(base, tmp_path, monkeypatch):
  out = tmp_path / "vgg16.msgpack"
  convert_keras.convert(base[1]["keras2_h5"], out)
  reads = []
  read_bytes = Path.read_bytes
  monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or read_bytes(self))
  assert jaxviz.load_model("vgg16", out).spec is VGG16
  assert reads == [out]


MEASURE_CONVERSION = """
import json, sys
from jaxviz.convert import keras
from jaxviz.models import vgg16
from jaxviz.models import layers as L
import dataclasses
spec = vgg16.VGG16_TOP if sys.argv[3] == "full" else dataclasses.replace(
    vgg16.VGG16_TOP, name="vgg16_top_64px", input_shape=(64, 64, 3), num_classes=10,
    layers=vgg16.BASE_LAYERS + (L.Flatten("flatten"), L.Dense("fc1", 4096, activation="relu"),
                               L.Dense("fc2", 4096, activation="relu"),
                               L.Dense("predictions", 10, activation="softmax")))
spec.param_shapes()  # traced once before measuring

def status(key):
  with open("/proc/self/status") as f:
    return int(next(line for line in f if line.startswith(key)).split()[1]) * 1024

with open("/proc/self/clear_refs", "w") as f:
  f.write("5")  # resets the peak resident size to the current one
before = status("VmRSS:")
keras.convert(sys.argv[1], sys.argv[2], spec)
print(json.dumps({"before": before, "peak": status("VmHWM:")}))
"""


def conversion_peak(tmp_path, variant: str) -> tuple[int, int]:
  """`(file size, peak resident memory added while converting it)` for a random VGG16 with its
  top in the Keras 2 layout: 'small' at 64×64 and 10 classes (160 MB, `fc2` is 42% of it),
  'full' at 224×224 and 1000 classes (528 MB, `fc1` is 78% of it)."""
  if not Path("/proc/self/clear_refs").exists():
    pytest.skip("needs Linux's /proc to measure peak memory")
  spec = VGG16_TOP if variant == "full" else SMALL_TOP
  rng = np.random.default_rng(0)
  params = {layer: {var: rng.standard_normal(shape, np.float32)
                    for var, shape in shapes.items()}
            for layer, shapes in spec.param_shapes().items()}
  src = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
  write_keras2_weights(src, spec_layers(spec, params))
  del params
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(
      [str(Path(jaxviz.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
  out = subprocess.run([sys.executable, "-c", MEASURE_CONVERSION, str(src),
                        str(tmp_path / "vgg16.msgpack"), variant],
                       capture_output=True, text=True, env=env, check=True)
  measured = json.loads(out.stdout.strip().splitlines()[-1])
  result = convert_keras.read(src, spec)  # the checkpoint holds the file's weights
  ckpt = checkpoint.read(tmp_path / "vgg16.msgpack")
  for layer in ("block1_conv1", "fc2"):
    np.testing.assert_array_equal(ckpt.params[layer]["kernel"], result.params[layer]["kernel"])
  return src.stat().st_size, measured["peak"] - measured["before"]


def test_conversion_memory_is_bounded_by_the_file_size(tmp_path):
  size, peak = conversion_peak(tmp_path, "small")
  assert peak <= 1.3 * size, f"peak {peak / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB file"


@pytest.mark.skipif(not os.environ.get("JAXVIZ_SLOW_TESTS"),
                    reason="writes and converts a 528 MB file; JAXVIZ_SLOW_TESTS=1")
def test_full_size_conversion_memory_is_bounded_by_the_file_size(tmp_path):
  size, peak = conversion_peak(tmp_path, "full")
  assert peak <= 1.3 * size, f"peak {peak / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB file"
