"""Running the app under uvicorn: loopback by default, our JSON access log instead of uvicorn's, and a graceful
shutdown (SIGINT / SIGTERM stop accepting, in-flight requests are answered, then the inference thread stops)."""

from __future__ import annotations

import ipaddress
import logging

import uvicorn

from graftkit.serving.settings import ServeSettings

logger = logging.getLogger("graftkit.serving")

LOOPBACK = ("localhost",)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def uvicorn_config(app, *, host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings,
                   max_connections: int = 256) -> uvicorn.Config:
    if not is_loopback(host) and settings.api_key is None:
        logger.warning("listening on %s without an API key: anyone who can reach this host can use the models "
                       "(pass --api-key-file)", host)
    return uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, server_header=False,
                          limit_concurrency=max_connections, lifespan="on",
                          timeout_graceful_shutdown=int(settings.timeout_s) + 5)


def access_logging(stream) -> None:
    """One JSON object per request on ``stream`` (the ``graftkit.serving.access`` logger)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger("graftkit.serving.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False


def serve(app, *, host: str, port: int, settings: ServeSettings, max_connections: int = 256) -> None:
    uvicorn.Server(uvicorn_config(app, host=host, port=port, settings=settings,
                                  max_connections=max_connections)).run()
