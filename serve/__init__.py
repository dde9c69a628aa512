"""hayaku's serving layer: config schema, app builder, hardware probe and ``auto`` resolution.

Importing this package is cheap and never imports Ray; ``serve.app`` (the builder that
``import_path: serve.app:build`` names) is the only module here that needs Ray.
"""
