"""Training LeNet with Optax.

    jaxviz train                                       # offline digits, about a minute
    jaxviz train --config.dataset=mnist                # MNIST through tensorflow-datasets
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.model = "lenet"
  c.dataset = "digits"       # digits (offline, UCI digits resized to 28×28) or mnist
  c.data_dir = ""            # tensorflow-datasets data dir; "" = its default (~/tensorflow_datasets)
  c.epochs = 0               # 0 = the dataset's default (digits: 30, mnist: 12)
  c.batch_size = 128
  c.learning_rate = 1e-3     # Adam
  c.seed = 0
  c.checkpoint = ""          # where to write; "" = the cache used by `jaxviz gallery`
  return c
