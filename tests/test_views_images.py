"""Input images for the views: files of any size, dataset examples, and clear errors."""

import numpy as np
import pytest
from PIL import Image

from jaxviz.errors import JaxvizError
from jaxviz.images import check_files, load_images, split_source
from jaxviz.models import get_spec
from jaxviz.models import layers as L
from jaxviz.models.spec import ModelSpec

LENET = get_spec("lenet")
RGB = ModelSpec(name="rgb", layers=(L.Conv("c", 1),), input_shape=(16, 16, 3),
                fixed_input_size=False, num_classes=0,
                preprocess=lambda p: np.asarray(p, np.float32)[..., ::-1] - 100.0,
                to_display=lambda x: x)


@pytest.fixture
def photo(tmp_path):
  pixels = np.zeros((30, 40, 3), np.uint8)
  pixels[..., 0] = 200  # red
  pixels[:, 20:, 2] = 100
  path = tmp_path / "photo.jpg"
  Image.fromarray(pixels).save(path, quality=100)
  return str(path)


def test_a_file_is_converted_resized_and_preprocessed(photo):
  grey = load_images(photo, LENET)
  assert grey.names == ["photo.jpg"] and grey.labels == [None]
  assert grey.pixels.shape == (1, 28, 28, 1)
  np.testing.assert_allclose(grey.inputs, grey.pixels / 255.0)
  colour = load_images(photo, RGB, 20)
  assert colour.pixels.shape == (1, 20, 20, 3)
  assert abs(colour.pixels[0, 5, 2, 0] - 200) <= 2 and colour.pixels[0, 5, 2, 2] <= 2
  np.testing.assert_allclose(colour.inputs, colour.pixels[..., ::-1] - 100.0)


def test_dataset_examples_are_the_test_split():
  from jaxviz import data
  images, labels = data.load_dataset("digits", "test")
  batch = load_images("digits:0,5-6", LENET)
  assert batch.names == ["digits:0", "digits:5", "digits:6"]
  assert batch.labels == [int(labels[0]), int(labels[5]), int(labels[6])]
  np.testing.assert_allclose(batch.inputs, images[[0, 5, 6]], atol=1e-6)


def test_mixed_sources_and_inversion(photo):
  batch = load_images([photo, "digits:1"], LENET, invert=True)
  assert len(batch) == 2 and batch.labels[0] is None
  from jaxviz import data
  np.testing.assert_allclose(batch.inputs[1], 1.0 - data.load_dataset("digits", "test")[0][1],
                             atol=1e-6)
  assert split_source(f"{photo}, digits:1,3, digits:2") == [photo, "digits:1,3", "digits:2"]


def test_bad_inputs_name_the_problem(tmp_path):
  missing = str(tmp_path / "nope.png")
  with pytest.raises(JaxvizError, match="nope.png.* does not exist"):
    load_images(missing, LENET)
  with pytest.raises(JaxvizError, match="nope.png.* does not exist"):
    check_files(f"digits:0,{missing}")
  junk = tmp_path / "junk.png"
  junk.write_text("not an image")
  with pytest.raises(JaxvizError, match="cannot read image file .*junk.png"):
    load_images(str(junk), LENET)
  with pytest.raises(JaxvizError, match="is a directory"):
    load_images(str(tmp_path), LENET)
  with pytest.raises(JaxvizError,
                     match="example index 100000 is out of range: the test split has 359"):
    load_images("digits:100000", LENET)
  with pytest.raises(JaxvizError, match="no input image"):
    load_images(" , ", LENET)
  with pytest.raises(JaxvizError, match="28×28 inputs only"):
    load_images("digits:0", LENET, 32)


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
  deep = np.full((28, 28), 32768, np.uint16)
  deep[0, 0] = 65535
  path = tmp_path / "deep.png"
  Image.fromarray(deep).save(path)
  assert Image.open(path).mode.startswith("I")
  pixels = load_images(str(path), LENET).pixels[0, ..., 0]
  np.testing.assert_allclose(pixels[0, 0], 255.0, rtol=1e-6)
  np.testing.assert_allclose(pixels[5, 5], 32768 * 255 / 65535, rtol=1e-6)  # 127.5, not 255


def test_a_file_name_with_commas_is_one_entry(tmp_path):
  path = tmp_path / "a, b,c.png"
  Image.fromarray(np.full((28, 28), 200, np.uint8)).save(path)
  batch = load_images(f"{path},digits:0,3", LENET)
  assert batch.names == ["a, b,c.png", "digits:0", "digits:3"]
  assert batch.pixels[0].min() == 200
