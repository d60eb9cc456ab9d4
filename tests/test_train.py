"""LeNet training: the real jitted step, shifts, evaluation, end to end, and config errors."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxviz import cache as cache_lib, checkpoint, data, loading, train
from jaxviz.config import load_config
from jaxviz.errors import JaxvizError
from jaxviz.models import get_spec
from jaxviz.progress import SILENT

SPEC = get_spec("lenet")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXVIZ_CACHE", str(tmp_path / "cache"))
  return tmp_path / "cache"


@pytest.fixture(scope="module")
def params():
  return SPEC.init_params(jax.random.key(0, impl=train.KEY_IMPL))


def test_train_steps_lower_the_loss(params):
  images, labels = data.load_dataset("digits", "train")
  images, labels = images[:64], labels[:64]
  optimizer = optax.adam(1e-3)
  params = jax.tree_util.tree_map(jnp.copy, params)  # the step donates what it is given
  state = train.TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))
  step = train.make_train_step(SPEC, optimizer, max_shift=0)
  loss_fn = jax.jit(functools.partial(train.loss_fn, SPEC))
  before, _ = loss_fn(state.params, images, labels)
  losses = []
  for _ in range(8):
    state, metrics = step(state, images, labels, jax.random.key(1, impl=train.KEY_IMPL))
    losses.append(float(metrics.loss))
  after, correct = loss_fn(state.params, images, labels)
  assert losses[0] == pytest.approx(float(before), rel=1e-5)
  assert float(after) < 0.5 * float(before)
  assert int(correct) > 32
  assert int(state.step) == 8
  assert step._cache_size() == 1


def test_logits_are_the_layer_before_softmax(params):
  x = jnp.asarray(data.load_dataset("digits", "test")[0][:4])
  out = jax.jit(functools.partial(train.logits, SPEC))(params, x)
  probs = jax.jit(SPEC.module.apply)({"params": params}, x)
  assert out.shape == (4, 10)
  np.testing.assert_allclose(jax.nn.softmax(out), probs, atol=1e-6)


def test_random_shift_moves_whole_digits():
  images = jnp.asarray(data.load_dataset("digits", "test")[0][:16])
  shifted = train.random_shift(jax.random.key(0), images, 2)
  assert shifted.shape == images.shape
  np.testing.assert_allclose(shifted.sum((1, 2, 3)), images.sum((1, 2, 3)), rtol=1e-5)
  assert not np.allclose(shifted, images)
  for image, moved in zip(np.asarray(images), np.asarray(shifted)):
    matches = [np.array_equal(np.roll(image, (dy, dx), (0, 1)), moved)
               for dy in range(-2, 3) for dx in range(-2, 3)]
    assert sum(matches) == 1
  assert train.random_shift(jax.random.key(0), images, 0) is images


def test_evaluate_pads_the_last_chunk():
  labels = np.arange(23) % 10
  images = labels.astype(np.float32)[:, None, None, None] * np.ones((1, 28, 28, 1), np.float32)
  images[:3] += 1.0
  calls = []

  def predict(params, x):
    calls.append(x.shape)
    return jnp.asarray(x[:, 0, 0, 0], jnp.int32)

  assert train.evaluate(predict, None, images, labels, batch_size=10) == pytest.approx(20 / 23)
  assert calls == [(10, 28, 28, 1)] * 3


def test_train_end_to_end_writes_a_loadable_checkpoint(cache, monkeypatch, capsys):
  monkeypatch.setattr(data, "load_dataset", functools.partial(_subset, n=96))
  config = load_config("train_lenet")
  config.epochs, config.batch_size = 2, 32
  path = train.train(config)
  assert path == cache_lib.default_weights_path("lenet", "digits") == cache / path.name
  params, metadata = checkpoint.load(path, SPEC)
  for key in ("dataset", "test_accuracy", "train_accuracy", "epochs", "seconds", "num_train",
              "num_test"):
    assert key in metadata
  assert metadata["dataset"] == "digits" and metadata["epochs"] == 2
  assert metadata["num_train"] == metadata["num_test"] == 96
  # The recorded accuracy is the saved model's on the test images; training learned something.
  test_images, test_labels = data.load_dataset("digits", "test")
  assert metadata["test_accuracy"] == train.evaluate(train.make_predict(SPEC), params,
                                                     test_images, test_labels)
  assert metadata["train_accuracy"] > 0.3  # chance: 0.1 (0.56 with this seed, 6 steps)
  assert json.loads(path.with_suffix(".json").read_text())["test_accuracy"] == (
      metadata["test_accuracy"])
  assert loading.load_model("lenet").metadata["test_accuracy"] == metadata["test_accuracy"]
  err = capsys.readouterr().err
  assert "[train] epoch 1/2: loss" in err and "[train] epoch 2/2: loss" in err
  assert "accuracy" in err


_load_dataset = data.load_dataset


def _subset(name, split, data_dir=None, n=96):
  images, labels = _load_dataset(name, split, data_dir)
  return images[:n], labels[:n]


def test_train_on_tiny_mnist_files(tmp_path, write_mnist):
  write_mnist(tmp_path / "tfds" / "downloads" / "manual", n_train=40, n_test=10)
  config = load_config("train_lenet")
  config.dataset, config.data_dir = "mnist", str(tmp_path / "tfds")
  config.epochs, config.batch_size = 1, 16
  config.checkpoint = str(tmp_path / "out" / "mnist.msgpack")
  path = train.train(config, progress=SILENT)
  assert path == tmp_path / "out" / "mnist.msgpack"
  _, metadata = checkpoint.load(path, SPEC)
  assert metadata["dataset"] == "mnist"
  assert (metadata["num_train"], metadata["num_test"]) == (40, 10)


def test_train_default_uses_the_shipped_config(monkeypatch, tmp_path):
  seen = []
  monkeypatch.setattr(train, "train", lambda config, progress=None: seen.append(config) or
                      tmp_path)
  assert train.train_default("mnist") == tmp_path
  (config,) = seen
  assert config.dataset == "mnist" and config.epochs == 0 and config.checkpoint == ""
  assert config.model == "lenet"


@pytest.mark.parametrize("field, value, message", [
    ("epochs", -1, "epochs must be"),
    ("batch_size", 0, "batch_size must be"),
    ("batch_size", -8, "batch_size must be"),
    ("learning_rate", 0.0, "learning_rate must be"),
    ("learning_rate", -1e-3, "learning_rate must be"),
])
def test_bad_values_raise(field, value, message, monkeypatch):
  monkeypatch.setattr(data, "load_dataset", lambda *a, **k: pytest.fail("loaded data"))
  config = load_config("train_lenet")
  config[field] = value
  with pytest.raises(JaxvizError, match=message):
    train.train(config, progress=SILENT)


def test_an_unwritable_checkpoint_path_is_refused_before_training(tmp_path, monkeypatch):
  monkeypatch.setattr(data, "load_dataset", lambda *a, **k: pytest.fail("loaded data"))
  blocker = tmp_path / "a-file"
  blocker.write_text("not a folder")
  for path, problem in ((blocker / "sub" / "lenet.msgpack", "a-file' is not a folder"),
                        (blocker / "lenet.msgpack", "a-file' is not a folder"),
                        (tmp_path, "it is a folder")):
    config = load_config("train_lenet")
    config.checkpoint = str(path)
    with pytest.raises(JaxvizError, match=f"cannot write the checkpoint .*{problem}.*"
                       "--config.checkpoint"):
      train.train(config, progress=SILENT)
  assert not (blocker.parent / "sub").exists()


def test_bad_names_raise():
  config = load_config("train_lenet")
  config.dataset = "cifar"
  with pytest.raises(JaxvizError, match="unknown dataset 'cifar'"):
    train.train(config, progress=SILENT)
  config = load_config("train_lenet")
  config.model = "lenet5"
  with pytest.raises(JaxvizError, match="unknown model"):
    train.train(config, progress=SILENT)


def test_default_epochs_per_dataset():
  assert train.check_hyperparameters("digits", 0, 128, 1e-3) == (
      train.DEFAULT_EPOCHS["digits"], 128, 1e-3)
  assert train.check_hyperparameters("mnist", 0, 128, 1e-3)[0] == train.DEFAULT_EPOCHS["mnist"]
  assert train.check_hyperparameters("digits", 3, 16, 1)[0] == 3
