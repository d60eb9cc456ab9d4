"""Keras files of every layout → jaxviz, checked against Keras itself, and every bad input.

Keras 3 on the JAX backend builds `keras.applications.VGG16` (random weights, fixed seed) and
saves it as `.weights.h5`, `.keras` and legacy `.h5`; the Keras 2 layout of the published
ImageNet files is written with h5py (`keras_layouts`). Each file is converted and the model's
activations are compared with the Keras model's at every layer, on random images.

The top is checked at 64×64 px and 10 classes (same layers and Keras code path, a 2×2×512
`flatten`); the full 224×224, 1000-class model in every layout takes minutes and 4 GB of disk
writes, so it runs only with JAXVIZ_SLOW_TESTS=1.
"""

import dataclasses
import io
import os
import re
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras")

import jaxviz  # noqa: E402
from jaxviz import cli  # noqa: E402
from jaxviz.convert import keras as convert_keras  # noqa: E402
from jaxviz.errors import JaxvizError  # noqa: E402
from jaxviz.models import Model  # noqa: E402
from jaxviz.models import layers as L  # noqa: E402
from jaxviz.models.vgg16 import BASE_LAYERS, VGG16, VGG16_TOP  # noqa: E402
from keras_layouts import keras_model_layers, write_keras2_weights  # noqa: E402

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


def extra_layer(folder, request):
  extra = ("extra_dense", [np.zeros((512, 10), np.float32), np.zeros(10, np.float32)])
  return (altered_keras2(folder, request, lambda layers: layers + [extra]), [],
          "missing layers [], unexpected layers ['extra_dense']")


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
    "missing_layer": missing_layer, "extra_layer": extra_layer,
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
