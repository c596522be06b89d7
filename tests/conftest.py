"""Shared fixtures."""

from __future__ import annotations

import os

# Keep test runs deterministic and cheap on 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")
