"""Serving fitted models over HTTP (``graftkit serve``): FastAPI app, micro-batching, limits, auth."""

from graftkit.serving.app import create_app
from graftkit.serving.models import ServedModel, load_served, parse_model_args
from graftkit.serving.settings import ServeSettings

__all__ = ["ServeSettings", "ServedModel", "create_app", "load_served", "parse_model_args"]
