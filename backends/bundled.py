"""Bundled offline models, built from installed packages (no hub). Registered on import."""

from __future__ import annotations
