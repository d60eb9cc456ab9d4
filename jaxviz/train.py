"""Training LeNet with Optax: Adam with a cosine-decayed learning rate on cross-entropy,
shuffled minibatches, random shifts.

    path = train(load_config("train_lenet"))    # or: jaxviz train --config.dataset=mnist
    path = train_default("digits")               # the checkpoint `jaxviz gallery` reads

The step is one jitted function that donates the state; the data stays in host memory and
each minibatch is gathered with numpy.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxviz import checkpoint, data
from jaxviz.errors import JaxvizError, unknown
from jaxviz.cache import default_weights_path
from jaxviz.models import ModelSpec, get_spec
from jaxviz.progress import Progress

DEFAULT_EPOCHS = {"digits": 10, "mnist": 12}
MAX_SHIFT = 2
EVAL_BATCH = 500
# XLA compiles Flax's initializers about 3× faster (seconds, on CPU) with this key than with
# threefry; every random stream of a run comes from it.
KEY_IMPL = "rbg"


class TrainState(NamedTuple):
  params: Any
  opt_state: optax.OptState
  step: jax.Array


class StepMetrics(NamedTuple):
  loss: jax.Array      # [] mean cross-entropy of the batch
  correct: jax.Array   # [] number of correct predictions in the batch


def train(config: ml_collections.ConfigDict, progress: Progress | None = None) -> Path:
  """Trains LeNet as `config` says (see configs/train_lenet.py) and writes its checkpoint.

  Returns the checkpoint path. Its metadata records the dataset, train and test accuracy,
  epochs, seconds, example counts and the hyperparameters.
  """
  start = time.perf_counter()
  progress = Progress("train") if progress is None else progress
  spec = get_spec(config.model)
  if spec.name != "lenet":
    raise JaxvizError(f"training is implemented for model 'lenet' only, not {spec.name!r}; "
                      "use --config.model=lenet.")
  epochs, batch_size, learning_rate = check_hyperparameters(
      config.dataset, config.epochs, config.batch_size, config.learning_rate)
  path = Path(config.checkpoint or default_weights_path(spec.name, config.dataset)).expanduser()
  check_writable(path)
  data_dir = config.data_dir or None
  train_x, train_y = data.load_dataset(config.dataset, "train", data_dir)
  test_x, test_y = data.load_dataset(config.dataset, "test", data_dir)
  progress(f"{config.dataset}: {len(train_y)} train, {len(test_y)} test images; "
           f"{epochs} epoch{'s' * (epochs != 1)} of batch {min(batch_size, len(train_y))}")

  key_init, key_aug = jax.random.split(jax.random.key(config.seed, impl=KEY_IMPL))
  steps = epochs * (len(train_y) // min(batch_size, len(train_y)))
  optimizer = make_optimizer(learning_rate, steps)
  state = init_state(spec, optimizer, key_init)
  step_fn = make_train_step(spec, optimizer, MAX_SHIFT)
  rng = np.random.default_rng(config.seed)
  loss = float("nan")
  for epoch in range(1, epochs + 1):
    state, loss, accuracy = train_epoch(step_fn, state, train_x, train_y, batch_size, rng,
                                        key_aug)
    progress(f"epoch {epoch}/{epochs}: loss {loss:.4f}, accuracy {accuracy:.2%}")

  predict = make_predict(spec)
  test_accuracy = evaluate(predict, state.params, test_x, test_y)
  train_accuracy = evaluate(predict, state.params, train_x, train_y)
  seconds = time.perf_counter() - start
  metadata = {
      "dataset": config.dataset,
      "test_accuracy": test_accuracy,
      "train_accuracy": train_accuracy,
      "final_loss": loss,
      "epochs": epochs,
      "batch_size": batch_size,
      "learning_rate": learning_rate,
      "schedule": "cosine",
      "max_shift": MAX_SHIFT,
      "seed": int(config.seed),
      "seconds": round(seconds, 2),
      "num_train": int(len(train_y)),
      "num_test": int(len(test_y)),
  }
  path = checkpoint.save(path, spec.name, state.params, metadata)
  progress(f"test accuracy {test_accuracy:.2%}, train accuracy {train_accuracy:.2%}; "
           f"wrote {path}")
  return path


def train_default(dataset: str, progress: Progress | None = None) -> Path:
  """Trains LeNet on `dataset` with the shipped `train_lenet` config and writes it where
  `jaxviz.loading.load_model` looks for it (`jaxviz.cache.default_weights_path`); returns that
  path."""
  from jaxviz.config import load_config
  config = load_config("train_lenet")
  config.dataset = dataset
  config.checkpoint = ""
  return train(config, progress)


def check_writable(path: Path) -> None:
  """Refuses, before any training, a checkpoint path that cannot be written: a folder, one
  under a file, or one in a folder this process cannot write (the folders are not created)."""
  def refuse(problem: str):
    raise JaxvizError(f"cannot write the checkpoint {str(path)!r}: {problem}. Choose another "
                      "path with --config.checkpoint=PATH.msgpack.")

  if path.is_dir():
    refuse("it is a folder")
  folder = path.parent
  while not folder.exists() and folder != folder.parent:
    folder = folder.parent
  if not folder.is_dir():
    refuse(f"{str(folder)!r} is not a folder")
  if folder != path.parent:  # to be created: can this process create entries there?
    if not os.access(folder, os.W_OK | os.X_OK):
      refuse(f"no permission to create folders in {str(folder)!r}")
    return
  try:
    with tempfile.TemporaryFile(dir=folder):
      pass
  except OSError as e:
    refuse(e.strerror or str(e))


def check_hyperparameters(dataset: str, epochs, batch_size,
                          learning_rate) -> tuple[int, int, float]:
  """Validated `(epochs, batch_size, learning_rate)`; epochs 0 becomes the dataset's default."""
  if not _is_int(epochs) or epochs < 0:
    raise JaxvizError(f"epochs must be a whole number ≥ 0 (0 = the dataset's default), "
                      f"got {epochs!r}")
  if not _is_int(batch_size) or batch_size <= 0:
    raise JaxvizError(f"batch_size must be a whole number > 0, got {batch_size!r}")
  if (isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float))
      or not math.isfinite(learning_rate) or learning_rate <= 0):
    raise JaxvizError(f"learning_rate must be a number > 0, got {learning_rate!r}")
  if epochs == 0:
    if dataset not in DEFAULT_EPOCHS:
      raise unknown("dataset", dataset, sorted(DEFAULT_EPOCHS))
    epochs = DEFAULT_EPOCHS[dataset]
  return int(epochs), int(batch_size), float(learning_rate)


def _is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def make_optimizer(learning_rate: float, steps: int) -> optax.GradientTransformation:
  """Adam whose learning rate falls from `learning_rate` to 0 along a cosine over `steps`."""
  return optax.adam(optax.cosine_decay_schedule(learning_rate, max(steps, 1)))


def init_state(spec: ModelSpec, optimizer: optax.GradientTransformation,
               key: jax.Array) -> TrainState:
  """Flax-initialized parameters, a fresh optimizer state and step 0."""
  params = spec.init_params(key)
  return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))


def logits(spec: ModelSpec, params, images: jax.Array) -> jax.Array:
  """Class logits `[N, 10]` for images `[N, 28, 28, 1]` (the layer before the softmax)."""
  return spec.module.apply({"params": params}, images, upto=spec.logits_layer)


def loss_fn(spec: ModelSpec, params, images: jax.Array,
            labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean cross-entropy `[]` of images `[N, 28, 28, 1]` with int labels `[N]`, and the number
  of correct predictions `[]`."""
  out = logits(spec, params, images)
  loss = optax.softmax_cross_entropy_with_integer_labels(out, labels).mean()
  return loss, jnp.sum(jnp.argmax(out, -1) == labels)


def random_shift(key: jax.Array, images: jax.Array, max_shift: int) -> jax.Array:
  """Moves each image `[N, H, W, C]` by its own random offset of up to `max_shift` pixels in
  each direction, filling with 0 (the background)."""
  if max_shift == 0:
    return images
  n, h, w, c = images.shape
  m = max_shift
  padded = jnp.pad(images, ((0, 0), (m, m), (m, m), (0, 0)))
  offsets = jax.random.randint(key, (n, 2), 0, 2 * m + 1)

  def crop(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

  return jax.vmap(crop)(padded, offsets)


def make_train_step(spec: ModelSpec, optimizer: optax.GradientTransformation,
                    max_shift: int = MAX_SHIFT
                    ) -> Callable[[TrainState, jax.Array, jax.Array, jax.Array],
                                  tuple[TrainState, StepMetrics]]:
  """`step(state, images, labels, key) -> (state, metrics)`, jitted, donating `state`.

  images `[B, 28, 28, 1]` float32, labels `[B]` int32; `key` is folded with the step count,
  so the shifts of step t do not depend on how steps are grouped.
  """
  def step(state: TrainState, images, labels, key):
    images = random_shift(jax.random.fold_in(key, state.step), images, max_shift)
    grad_fn = jax.value_and_grad(functools.partial(loss_fn, spec), has_aux=True)
    (loss, correct), grads = grad_fn(state.params, images, labels)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(params, opt_state, state.step + 1), StepMetrics(loss, correct)

  return jax.jit(step, donate_argnums=0)


def train_epoch(step_fn, state: TrainState, images: np.ndarray, labels: np.ndarray,
                batch_size: int, rng: np.random.Generator,
                key: jax.Array) -> tuple[TrainState, float, float]:
  """One pass over a shuffled copy of the data in full batches of `min(batch_size, N)`; the
  last partial batch is left out (another one each epoch). Returns `(state, mean loss,
  accuracy)` over the batches seen."""
  n = len(labels)
  batch = min(batch_size, n)
  order = rng.permutation(n)
  metrics = []
  for i in range(n // batch):
    idx = order[i * batch:(i + 1) * batch]
    state, m = step_fn(state, images[idx], labels[idx], key)
    metrics.append(m)
  losses, correct = jax.device_get(([m.loss for m in metrics], [m.correct for m in metrics]))
  return state, float(np.mean(losses)), int(np.sum(correct)) / (len(metrics) * batch)


def make_predict(spec: ModelSpec) -> Callable[[Any, jax.Array], jax.Array]:
  """`predict(params, images [N, 28, 28, 1]) -> labels [N]`, jitted."""
  return jax.jit(lambda params, images: jnp.argmax(logits(spec, params, images), -1))


def evaluate(predict, params, images: np.ndarray, labels: np.ndarray,
             batch_size: int = EVAL_BATCH) -> float:
  """Accuracy in [0, 1] of `predict` on images `[N, 28, 28, 1]`, labels `[N]`.

  Runs in chunks of `batch_size` images, the last one padded, so one program serves any N.
  """
  n = len(labels)
  if n == 0:
    return float("nan")
  chunk = batch_size
  predictions = []
  for lo in range(0, n, chunk):
    x = images[lo:lo + chunk]
    pad = chunk - len(x)
    if pad:
      x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
    predictions.append(predict(params, x)[:chunk - pad])
  predicted = np.asarray(jnp.concatenate(predictions))
  return float(np.mean(predicted == labels))
