"""jaxviz.cache: where weights and compiled programs are kept."""

import jax

from jaxviz import cache


def test_compiled_programs_are_kept_on_accelerators_only(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXVIZ_CACHE", str(tmp_path))
  before = jax.config.jax_compilation_cache_dir
  try:
    jax.config.update("jax_compilation_cache_dir", None)
    assert cache.keep_compiled_programs("cpu") is None
    assert jax.config.jax_compilation_cache_dir is None
    assert cache.keep_compiled_programs("gpu") == tmp_path / "xla"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "xla")
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "mine"))  # the user's own
    assert cache.keep_compiled_programs("tpu") == tmp_path / "mine"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")
  finally:
    jax.config.update("jax_compilation_cache_dir", before)
