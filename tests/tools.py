"""External programs the tests use, found whether or not the virtual environment is active."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def dcm2niix() -> str:
    """Path of the reference converter from the ``dcm2niix`` test dependency.

    CI runs ``.venv/bin/python -m pytest`` without activating the environment, so the
    interpreter's own ``bin`` folder is searched before ``PATH``. A missing converter fails the
    test that needs it: it is a declared test dependency, not an optional one.
    """
    exe = shutil.which("dcm2niix", path=str(Path(sys.executable).parent)) or shutil.which(
        "dcm2niix"
    )
    if exe is None:
        raise RuntimeError("dcm2niix not found: pip install -e '.[test]'")
    return exe
