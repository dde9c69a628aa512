"""The HTTP surface of the ingress (FastAPI, no Ray), one module per concern.

- ``schemas``: the request and response bodies of the routes (pydantic).
- ``errors``: the JSON error body, and which status an exception (Ray-wrapped or not) maps to.
- ``middleware``: request ids, body limits, JSON bodies whatever their Content-Type, load shedding.
- ``security``: the API key and CORS (the ``security`` section of the YAML).
- ``redaction``: keeping request text out of the logs.
- ``app``: ``create_app`` (the FastAPI app with all of the above) and its OpenAPI error documentation.

Import from the module that defines a name; this package re-exports nothing.
"""
