"""What a server accepts and how it batches: one dataclass the CLI fills from its flags."""

from __future__ import annotations

from dataclasses import dataclass

from graftkit.errors import ConfigError


@dataclass(frozen=True)
class ServeSettings:
    max_body_bytes: int = 8 * 1024 * 1024   # the whole request, base64 media included
    max_rows: int = 256                     # rows in one request
    max_text_chars: int = 20_000            # characters of one text
    max_media_bytes: int = 5 * 1024 * 1024  # one decoded image or clip
    max_pixels: int = 25_000_000            # width x height read from the image header, before decoding
    max_audio_seconds: float = 60.0         # frames / rate read from the clip header, before decoding
    timeout_s: float = 30.0                 # a request waits this long for its answer, then gets 504
    batching: bool = True                   # merge concurrent requests into one forward pass
    max_batch_rows: int = 64                # rows of one merged batch
    max_wait_ms: float = 5.0                # how long the first request of a batch waits for company
    max_queue_rows: int = 4096              # rows waiting per model before new requests get 503
    api_key: str | None = None              # bearer token; None: no authentication

    def __post_init__(self):
        for name in ("max_body_bytes", "max_rows", "max_text_chars", "max_media_bytes", "max_pixels",
                     "max_batch_rows", "max_queue_rows"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1; got {value!r} (--{name.replace('_', '-')})")
        for name in ("max_audio_seconds", "timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0; got {getattr(self, name)!r} (--{name.replace('_', '-')})")
        if not self.max_wait_ms >= 0:
            raise ConfigError(f"max_wait_ms must be >= 0; got {self.max_wait_ms!r} (--max-wait-ms)")
        if self.api_key is not None and not self.api_key:
            raise ConfigError("the API key is empty; write a token into the --api-key-file")
