"""Runs the jaxviz command line, killing the process (SIGKILL, like `kill -9`) right after it has
saved its N-th chunk file, so the resume tests can stop a run at an exact point:

    python tests/crash_after_chunks.py N gallery --workdir DIR [ARGS...]
"""

from __future__ import annotations

import os
import signal
import sys

from jaxviz import cli, resume


def crash_after(limit: int) -> None:
  """Makes `RunState.save_chunk` kill this process once it has saved `limit` chunks."""
  save = resume.RunState.save_chunk
  saved = 0

  def save_then_crash(self, *args, **kwargs):
    nonlocal saved
    save(self, *args, **kwargs)
    saved += 1
    if saved >= limit:
      os.kill(os.getpid(), signal.SIGKILL)

  resume.RunState.save_chunk = save_then_crash


if __name__ == "__main__":
  crash_after(int(sys.argv[1]))
  sys.exit(cli.main(sys.argv[2:]))
