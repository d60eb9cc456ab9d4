"""The view commands end to end on a random LeNet checkpoint, and the bad inputs they refuse."""

import json

import numpy as np
import pytest
from PIL import Image

from jaxviz import checkpoint, cli
from jaxviz.models import Model, get_spec
from jaxviz.jobs import frame


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
  spec = get_spec("lenet")
  rng = np.random.default_rng(0)
  params = {layer: {"kernel": rng.normal(0, np.sqrt(2 / np.prod(s["kernel"][:-1])),
                                         s["kernel"]).astype(np.float32),
                    "bias": np.zeros(s["bias"], np.float32)}
            for layer, s in spec.param_shapes().items()}
  path = tmp_path_factory.mktemp("weights") / "lenet-random.msgpack"
  return str(checkpoint.save(path, "lenet", params, {"note": "test"}))


pytestmark = pytest.mark.usefixtures("isolated_cache")  # each test with its own cache


@pytest.fixture
def digit_file(tmp_path):
  pixels = np.full((40, 30), 255, np.uint8)
  pixels[5:35, 12:18] = 0  # a dark "1" on white paper
  path = tmp_path / "one.png"
  Image.fromarray(pixels).save(path)
  return str(path)


def run(command, workdir, weights, *overrides):
  return cli.main([command, "--workdir", str(workdir), f"--config.weights={weights}",
                   *overrides])


def png_shape(path):
  with Image.open(path) as image:
    return image.size


def test_weights(tmp_path, weights):
  assert run("weights", tmp_path, weights) == 0
  out = tmp_path / "weights/conv2d_1"
  assert {p.name for p in out.iterdir()} == {"filters.png", "channels.png", "kernel.npy",
                                             "weights.json", "config.json"}
  assert np.load(out / "kernel.npy").shape == (5, 5, 1, 20)
  assert run("weights", tmp_path, weights, "--config.layer=conv2d_2",
             "--config.filters=0-3") == 0
  assert not (tmp_path / "weights/conv2d_2/filters.png").exists()
  assert json.loads((tmp_path / "weights/conv2d_2/weights.json").read_text())["filters"] == [
      0, 1, 2, 3]


def test_feature_maps_of_a_file_and_dataset_examples(tmp_path, weights, digit_file):
  assert run("feature-maps", tmp_path, weights, f"--config.images={digit_file},digits:3",
             "--config.invert=True") == 0
  out = tmp_path / "feature-maps"
  assert sorted(p.name for p in (out / "one").iterdir()) == [
      "conv2d_1.npy", "conv2d_1.png", "conv2d_2.npy", "conv2d_2.png", "input.png"]
  assert np.load(out / "digits-3/conv2d_2.npy").shape == (14, 14, 50)
  info = json.loads((out / "feature_maps.json").read_text())
  assert info["images"] == ["one.png", "digits:3"] and info["labels"][0] is None
  assert info["layers"] == {"conv2d_1": [28, 28, 20], "conv2d_2": [14, 14, 50]}


def test_classes(tmp_path, weights):
  assert run("classes", tmp_path, weights, "--config.classes=2,7", "--config.steps=3") == 0
  out = tmp_path / "classes"
  records = json.loads((out / "classes.json").read_text())
  assert [r["class"] for r in records] == [2, 7]
  assert set(records[0]) == {"class", "predicted", "probability", "logit",
                             "predicted_from_png"}
  assert np.load(out / "images.npy").shape == (2, 28, 28, 1)
  assert np.load(out / "activations.npy").shape == (2, 2 * 4)
  assert png_shape(out / "class_7.png") == (28, 28)


def test_gradcam(tmp_path, weights):
  assert run("gradcam", tmp_path, weights, "--config.images=digits:0-4",
             "--config.top_k=2", "--config.batch_size=2") == 0
  out = tmp_path / "gradcam"
  heat = np.load(out / "heatmaps.npy")
  assert heat.shape == (5, 2, 28, 28) and heat.min() >= 0 and heat.max() <= 1
  info = json.loads((out / "gradcam.json").read_text())
  assert info["layer"] == "activation_2" and len(info["images"]) == 5
  assert png_shape(out / "gradcam.png") == (3 * 112 + 2 * 4, 5 * 112 + 4 * 4)


@pytest.mark.parametrize("method", ["saliency", "deconvnet"])
def test_attribution(tmp_path, weights, method):
  assert run("attribution", tmp_path, weights, "--method", method,
             "--config.images=digits:0-2", "--config.classes=1,4") == 0
  out = tmp_path / method
  assert np.load(out / "maps.npy").shape == (3, 2, 28, 28, 1)
  info = json.loads((out / "attribution.json").read_text())
  assert info["method"] == method and info["images"][0]["targets"] == [1, 4]


@pytest.mark.parametrize("command, overrides, message", [
    ("feature-maps", ["--config.images=missing.png"], "image file 'missing.png' does not exist"),
    ("gradcam", ["--config.images=digits:0,missing.png"], "'missing.png' does not exist"),
    ("feature-maps", ["--config.layer=conv2d_9"], "'conv2d_9'. Did you mean 'conv2d_2'?"),
    ("weights", ["--config.layer=dense_1"], "'dense_1' is not a conv layer"),
    ("gradcam", ["--config.classes=3,12"], "class index 12 is out of range"),
    ("gradcam", ["--config.layer=dense_1"], "layer with maps"),
    ("classes", ["--config.classes=10"], "class index 10 is out of range"),
    ("attribution", ["--config.method=lrp"], "unknown attribution method 'lrp'"),
    ("attribution", ["--config.layer=conv2d_2", "--config.filters=50"], "out of range"),
    ("gradcam", ["--config.images=digits:99999"], "example index 99999 is out of range"),
    ("feature-maps", ["--config.model=vgg16", "--config.size=100000"],
     "over the memory budget"),
    ("attribution", ["--config.model=vgg16", "--config.size=30000"], "lower size or batch_size"),
    ("classes", ["--config.margin=1000"], "margin must be 0–64 pixels"),
])
def test_bad_input_fails_cleanly(tmp_path, weights, capsys, command, overrides, message):
  assert run(command, tmp_path / "out", weights, *overrides) == 2
  err = capsys.readouterr().err
  assert f"jaxviz {command}: error:" in err and message in err
  assert "Traceback" not in err
  leftovers = list((tmp_path / "out").rglob("*")) if (tmp_path / "out").exists() else []
  assert not [p for p in leftovers if p.is_file()]


def test_unreadable_image_and_missing_workdir(tmp_path, weights, capsys):
  junk = tmp_path / "junk.jpg"
  junk.write_bytes(b"\x00" * 100)
  assert run("gradcam", tmp_path, weights, f"--config.images={junk}") == 2
  assert "cannot read image file" in capsys.readouterr().err
  assert cli.main(["gradcam"]) == 2
  assert "--workdir" in capsys.readouterr().err


def test_classes_of_a_model_without_a_top(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(frame, "load_or_train", lambda *a, **k: Model(get_spec("vgg16"), {}))
  assert cli.main(["classes", "--workdir", str(tmp_path), "--config.model=vgg16"]) == 2
  assert "no classifier top" in capsys.readouterr().err
  assert cli.main(["gradcam", "--workdir", str(tmp_path), "--config.model=vgg16",
                   "--config.images=digits:0"]) == 2
  assert "no classifier top" in capsys.readouterr().err
