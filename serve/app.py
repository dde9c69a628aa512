"""The name a Ray Serve YAML's ``import_path: serve.app:build`` points at; the builder is deployments.app."""

from deployments.app import build

__all__ = ["build"]
