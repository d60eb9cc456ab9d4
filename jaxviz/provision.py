"""The model a job runs on: the weights it names, or the cached default, trained first when
LeNet's is missing. Sits above loading and training, which know nothing of each other."""

from __future__ import annotations

import os

from jaxviz import loading, train
from jaxviz.models import Model


def load_or_train(name: str, weights: str | os.PathLike | None = None, *,
                  dataset: str = "digits") -> Model:
  """`loading.load_model`, after training LeNet's default weights on `dataset` when no weights
  are given and none are cached."""
  if name == "lenet" and weights in (None, "") and \
      not loading.default_weights(name, dataset).exists():
    train.train_default(dataset)
  return loading.load_model(name, weights, dataset=dataset)
