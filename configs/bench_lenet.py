"""Benchmark: all 50 filters of LeNet `conv2d_2`, 28 px, 20 steps of the seeds' normalized
gradient; random He-normal weights (time does not depend on the weights' values).

    jaxviz bench                                  # this config is the default
    jaxviz bench --json                           # one JSON line per job instead of the table
    jaxviz bench --config.num_filters=20 --config.steps=50

About a minute on 2 CPU cores: the matmul peak, the fresh process (compile included), the warm
runs and the seed method.
Other bench configs start from this one and override the job.
"""

import dataclasses

import ml_collections

from jaxviz.engine import AscentSettings


def get_config() -> ml_collections.ConfigDict:
  engine = AscentSettings()  # the engine's own defaults, so its choices show in the numbers
  c = ml_collections.ConfigDict()
  # The job.
  c.model = "lenet"          # registered model name: lenet, vgg16
  c.layer = "conv2d_2"       # layer name; a comma list ("a,b,c") benchmarks each in turn
  c.num_filters = 50         # the first this many filters of the layer; 0 = all of them
  c.steps = 20               # gradient-ascent steps
  c.size = 28                # image side in pixels (LeNet takes 28 only)
  c.seed = 0                 # images' random start, and the random weights
  c.random_weights = True    # He-normal kernels, zero biases; False: load `weights` instead
  c.weights = ""             # with random_weights=False: checkpoint or Keras file, "" = default
  c.dataset = "digits"       # with random_weights=False: LeNet's default weights' dataset
  # The ascent: the seeds' algorithm, x += step_size · g / (sqrt(mean(g²)) + 1e-5).
  c.step_size = 1.0          # learning rate
  c.optimizer = "sgd"        # optax optimizer
  c.normalize_grad = True    # the seeds' gradient normalization
  c.init_noise = 20.0        # start: grey 128 plus uniform noise of this width, in pixels
  c.follow_relu = False      # the seeds' objective: the layer's output as Keras reports it
  c.rescue = False           # ... with the plain ReLU gradient
  c.robustness_samples = 0   # the seed method measures no robustness: neither does the job
  # The engine.
  c.chunk_size = 0           # filters per compiled batch; 0 = the engine chooses (as `run` does)
  c.split_cpu = True         # one device per CPU core, as the gallery job (jaxviz.host_devices)
  # Every other engine setting (loop, channel_only, …, regularizers off) at the engine's own
  # default, so its choices show in the numbers and each can be compared: --config.loop=scan.
  for field in dataclasses.fields(AscentSettings):
    if field.name not in c:
      c[field.name] = getattr(engine, field.name)
  # How it is measured.
  c.repeats = 3              # warm runs after the cold one; seconds_warm is their median
  c.fresh_process = True     # cold run in a fresh Python process (False: first call here)
  c.compilation_cache = False  # let the fresh process use JAX's persistent compilation cache
  c.baseline_filters = 0     # seed method timed on this many filters and scaled; 0 = all
  c.peak_size = 2048         # side of the float32 matmul that measures the machine's peak
  c.peak_trials = 10         # the peak is the best of this many matmuls
  return c
