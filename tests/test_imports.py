"""Every module imports on its own, first: no import cycle hides behind an import order."""

import pkgutil
import subprocess
import sys

import jaxviz

SCRIPT = """
import importlib, sys
failed = []
for name in sys.argv[1:]:
  for loaded in [m for m in sys.modules if m == "jaxviz" or m.startswith("jaxviz.")]:
    del sys.modules[loaded]
  try:
    importlib.import_module(name)
  except Exception as e:
    failed.append(f"{name}: {type(e).__name__}: {e}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_first_in_a_fresh_interpreter():
  names = [m.name for m in pkgutil.walk_packages(jaxviz.__path__, "jaxviz.")]
  assert "jaxviz.loading" in names and "jaxviz.convert.keras" in names
  run = subprocess.run([sys.executable, "-c", SCRIPT, *names], capture_output=True, text=True)
  assert run.returncode == 0, run.stdout + run.stderr


def test_every_package_is_installed():
  """A package missing from pyproject.toml's list works in a checkout and not once installed."""
  import pathlib
  import tomllib
  root = pathlib.Path(jaxviz.__file__).parent
  listed = set(tomllib.loads((root.parent / "pyproject.toml").read_text())
               ["tool"]["setuptools"]["packages"])
  found = {"jaxviz"} | {m.name for m in pkgutil.walk_packages(jaxviz.__path__, "jaxviz.")
                        if m.ispkg}
  assert found <= listed, f"add to pyproject.toml's packages: {sorted(found - listed)}"
