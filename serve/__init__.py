"""The top of the house: what users run (``hayaku`` CLI, ``serve.app:build`` for ``serve run``, KubeRay manifests).

Layers, each importing only those before it: ``backends`` (models and runtimes, no Ray) ->
``graph`` (config, ``auto``, the orchestrator; no Ray) -> ``deployments`` (Ray Serve and HTTP) ->
``benchmarks`` -> ``serve``.
"""
