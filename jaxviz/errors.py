"""The one exception type users see: it names the problem and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class JaxvizError(Exception):
  """A problem with the user's input or files. The CLI prints it and exits with status 2."""


def unknown(what: str, name: object, valid: Iterable[object]) -> JaxvizError:
  """Error for an unknown name: lists the valid ones and suggests the closest."""
  valid = [str(v) for v in valid]
  close = difflib.get_close_matches(str(name), valid, n=1)
  hint = f" Did you mean {close[0]!r}?" if close else ""
  return JaxvizError(f"unknown {what} {name!r}.{hint} Valid: {', '.join(valid)}")
