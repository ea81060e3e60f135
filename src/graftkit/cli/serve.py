"""``graftkit serve``: fitted models behind an HTTP API (see ``graftkit.serving``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from graftkit.cli.options import positive_int
from graftkit.errors import ConfigError


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got {text!r}")
    return value


def register(commands) -> None:
    serve = commands.add_parser(
        "serve", help="serve fitted models over HTTP (predictions as JSON, adapters on one base, micro-batching)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  graftkit serve runs/intent runs/sentiment --port 8000\n"
               "  curl -s localhost:8000/v1/models/intent/predict -H 'Content-Type: application/json' \\\n"
               "       -d '{\"inputs\": [{\"text\": \"I lost my card\"}]}'\n"
               "models: DIR (named by its folder) or NAME=DIR; /docs has the OpenAPI page")
    serve.add_argument("models", nargs="+", metavar="DIR", help="model directories written by `graftkit fit`")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=_port, default=8000, help="TCP port (default: 8000)")
    serve.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    serve.add_argument("--runtime", choices=["torch", "onnx"], default="torch",
                       help="onnx: every DIR is a `graftkit export --format onnx` directory, run with onnxruntime")
    serve.add_argument("--api-key-file", metavar="FILE",
                       help="file holding a bearer token that /v1/* requests must send (Authorization: Bearer ...)")
    limits = serve.add_argument_group("limits (a request past one gets a 4xx naming the field)")
    limits.add_argument("--max-body-bytes", type=positive_int, default=8 * 1024 * 1024,
                        help="request body size (default: 8 MiB)")
    limits.add_argument("--max-rows", type=positive_int, default=256, help="rows per request (default: 256)")
    limits.add_argument("--max-text-chars", type=positive_int, default=20_000, help="characters per text (default: 20000)")
    limits.add_argument("--max-media-bytes", type=positive_int, default=5 * 1024 * 1024,
                        help="bytes of one image or clip (default: 5 MiB)")
    limits.add_argument("--max-pixels", type=positive_int, default=25_000_000,
                        help="width x height of one image, read from its header (default: 25000000)")
    limits.add_argument("--max-audio-seconds", type=_positive_float, default=60.0,
                        help="duration of one clip, read from its header (default: 60)")
    limits.add_argument("--timeout", type=_positive_float, default=30.0,
                        help="seconds a request waits for its answer before a 504 (default: 30)")
    limits.add_argument("--max-connections", type=positive_int, default=256,
                        help="concurrent connections; past it uvicorn answers 503 (default: 256)")
    batching = serve.add_argument_group("micro-batching (concurrent requests share one forward pass)")
    batching.add_argument("--no-batching", action="store_true", help="run every request on its own")
    batching.add_argument("--max-batch-rows", type=positive_int, default=64, help="rows of one batch (default: 64)")
    batching.add_argument("--max-wait-ms", type=float, default=5.0,
                          help="how long a batch waits for more requests, in ms (default: 5)")
    serve.set_defaults(run=run_serve)


def read_api_key(path: str) -> str:
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"--api-key-file {path!r} does not exist; check the path") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--api-key-file {path!r} is not UTF-8 text; write the token as text") from None
    if len(key) < 16:
        raise ConfigError(f"--api-key-file {path!r} holds a token of {len(key)} characters; use at least 16 (e.g. "
                          "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
    return key


def run_serve(args) -> int:
    from graftkit.serving import (
        ServeSettings,
        create_app,
        load_served,
        parse_model_args,
    )
    from graftkit.serving.server import access_logging, serve

    settings = ServeSettings(max_body_bytes=args.max_body_bytes, max_rows=args.max_rows,
                             max_text_chars=args.max_text_chars, max_media_bytes=args.max_media_bytes,
                             max_pixels=args.max_pixels, max_audio_seconds=args.max_audio_seconds,
                             timeout_s=args.timeout, batching=not args.no_batching,
                             max_batch_rows=args.max_batch_rows, max_wait_ms=args.max_wait_ms,
                             api_key=read_api_key(args.api_key_file) if args.api_key_file else None)
    served = load_served(parse_model_args(args.models), device=args.device, runtime=args.runtime,
                         batch_rows=settings.max_batch_rows if settings.batching else None)
    access_logging(sys.stderr)
    serve(create_app(served, settings), host=args.host, port=args.port, settings=settings,
          max_connections=args.max_connections)
    return 0
