"""A local web page for playing with the generative process (``gibbsdream serve``).

:func:`create_app` builds the FastAPI application over models loaded by :func:`load_models`;
:func:`serve` runs it with uvicorn on a socket it binds itself (so port 0 picks a free port
whose number can be printed before the first request).
"""

from .app import Limits, ServedModel, create_app, load_models
from .server import bind, serve

__all__ = ["Limits", "ServedModel", "bind", "create_app", "load_models", "serve"]
