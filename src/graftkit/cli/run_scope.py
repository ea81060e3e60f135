"""What one CLI run sets up for itself and takes down when it ends, whatever way it ends.

- Its own temporary directory (``graftkit-run-XXXX`` under the system's): Python's ``tempfile`` (graftkit's
  temporary training directories, libraries' scratch files), ``TMPDIR`` for subprocesses, and torch's compile
  caches (``TORCHINDUCTOR_CACHE_DIR``, ``TRITON_CACHE_DIR``) point into it, and it is removed when the run ends —
  a crash or Ctrl-C included. A compile cache the user pointed elsewhere on purpose is left where they put it.
- The image pixel limit (``--max-image-pixels``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path

from graftkit.data.media import max_image_pixels

CACHE_VARIABLES = {"TORCHINDUCTOR_CACHE_DIR": "torchinductor", "TRITON_CACHE_DIR": "triton"}


@contextmanager
def run_scope(args=None):
    """The run's temporary directory (yielded) and settings, undone at exit."""
    scratch = Path(tempfile.mkdtemp(prefix="graftkit-run-"))
    variables = {"TMPDIR": str(scratch), "TEMP": str(scratch), "TMP": str(scratch),
                 **{name: str(scratch / folder) for name, folder in CACHE_VARIABLES.items()
                    if not os.environ.get(name)}}
    saved_env = {name: os.environ.get(name) for name in variables}
    saved_tempdir = tempfile.tempdir
    os.environ.update(variables)
    tempfile.tempdir = str(scratch)
    limit = getattr(args, "max_image_pixels", None)
    try:
        with max_image_pixels(limit) if limit is not None else nullcontext():
            yield scratch
    finally:
        tempfile.tempdir = saved_tempdir
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(scratch, ignore_errors=True)

