"""Configs that ship with jaxviz; load one with `--config NAME` or `--config path/to/file.py`."""
