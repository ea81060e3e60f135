"""``graftkit serve`` (issue 15): a real uvicorn server on 127.0.0.1 answering tiny fitted models (text
classification and regression probes, two LoRA adapters on one tiny BERT, an image and an audio probe): answers
equal to the library's, adapters on one base, micro-batching that merges requests without changing answers, a
bounded load test, hostile requests (a table and Hypothesis) answered with the right 4xx, auth, timeout, and the
CLI's graceful shutdown."""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import sentiment_frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graftkit as gk
from graftkit.serving import ServeSettings, create_app, load_served
from graftkit.serving.server import uvicorn_config

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"progress": False, "use_cache": False}
LORA = {"strategy": "lora", "epochs": 2, "batch_size": 8, "patience": 0, "val_size": 0.0, "calibrate": False,
        "learning_rate": 0.02}


# -- models the tests fit ------------------------------------------------------------------------------------
def _png(color, seed) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.clip(np.asarray(color, np.float64) + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _wav(freq, seed, seconds=0.25) -> bytes:
    import soundfile

    t = np.arange(int(16000 * seconds)) / 16000
    noise = np.random.default_rng(seed).normal(0, 0.05, t.size)
    buffer = io.BytesIO()
    soundfile.write(buffer, (0.5 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32), 16000, format="WAV")
    return buffer.getvalue()


def _tiny_wav2vec2(folder: Path) -> Path:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    Wav2Vec2Model(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, tiny_bert_dir, tiny_vit_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("served")
    bert = str(tiny_bert_dir)
    texts = sentiment_frame(60)
    dirs = {"sentiment": gk.Graft(bert, **FAST).fit(gk.load_data(texts, text="text", label="label"))
            .save(root / "sentiment")}
    scored = texts.assign(score=(texts["label"] == "pos").astype(float) * 4 + 1).drop(columns="label")
    dirs["score"] = (gk.Graft(bert, task="regression", **FAST).fit(gk.load_data(scored, text="text", label="score"))
                     .save(root / "score"))
    flipped = texts.assign(label=texts["label"].map({"pos": "neg", "neg": "pos"}))
    for name, frame, seed in (("lora-a", texts, 0), ("lora-b", flipped, 1)):
        dirs[name] = (gk.Graft(bert, seed=seed, **FAST, **LORA)
                      .fit(gk.load_data(frame, text="text", label="label")).save(root / name))
    images = pd.DataFrame({"image": [_png((200, 30, 30) if i % 2 else (30, 30, 200), i) for i in range(12)],
                           "label": ["red" if i % 2 else "blue" for i in range(12)]})
    dirs["colour"] = (gk.Graft(str(tiny_vit_dir), **FAST).fit(gk.load_data(images, image="image", label="label"))
                      .save(root / "colour"))
    clips = pd.DataFrame({"audio": [_wav(300 if i % 2 else 1200, i) for i in range(12)],
                          "label": ["low" if i % 2 else "high" for i in range(12)]})
    w2v = _tiny_wav2vec2(tmp_path_factory.mktemp("tiny-w2v"))
    dirs["pitch"] = (gk.Graft(str(w2v), **FAST).fit(gk.load_data(clips, audio="audio", label="label"))
                     .save(root / "pitch"))
    return dirs


@pytest.fixture(scope="module")
def served(model_dirs):
    return load_served(model_dirs)


class Running:
    """A real uvicorn server on 127.0.0.1 (a free port the OS picks) in a thread; stopped on exit."""

    def __init__(self, app, settings: ServeSettings):
        import uvicorn

        self.server = uvicorn.Server(uvicorn_config(app, host="127.0.0.1", port=0, settings=settings))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.app = app

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.host, self.port, self.url = host, port, f"http://{host}:{port}"
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)

    def batches(self, name: str) -> int:
        return self.app.state.batchers[name].batches


@pytest.fixture(scope="module")
def server(served):
    settings_ = ServeSettings(max_body_bytes=2 * 1024 * 1024, max_rows=64, max_media_bytes=512 * 1024,
                              max_pixels=1_000_000, max_audio_seconds=5.0, max_wait_ms=20.0)
    with Running(create_app(served, settings_), settings_) as running:
        yield running


@pytest.fixture
def errors_logged():
    """ERROR records of graftkit's and uvicorn's loggers while the test runs (there must be none)."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Collect(level=logging.ERROR)
    loggers = [logging.getLogger(n) for n in ("graftkit", "uvicorn", "uvicorn.error", "fastapi")]
    for logger in loggers:
        logger.addHandler(handler)
    yield records
    for logger in loggers:
        logger.removeHandler(handler)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _texts(n=6, seed=5):
    return sentiment_frame(n, seed=seed)["text"].tolist()


# -- answers ---------------------------------------------------------------------------------------------------
def test_health_models_and_openapi(server, model_dirs):
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok", "models": list(model_dirs), "batching": True}
    models = {m["name"]: m for m in httpx.get(f"{server.url}/v1/models").json()["models"]}
    assert list(models) == list(model_dirs)
    assert models["sentiment"]["task"] == "classification" and models["sentiment"]["labels"] == ["neg", "pos"]
    assert models["sentiment"]["strategy"] == "linear-probe" and "accuracy" in models["sentiment"]["metrics"]["train"]
    assert models["score"]["task"] == "regression" and models["colour"]["input"] == "image"
    assert models["lora-a"]["shares_base_with"] == ["lora-b"] and models["sentiment"]["shares_base_with"] == []
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert "/v1/models/{name}/predict" in spec["paths"]
    assert httpx.get(f"{server.url}/docs").status_code == 200


def test_predictions_equal_the_library(server, model_dirs):
    texts = _texts()
    for name in ("sentiment", "score", "lora-a", "lora-b"):
        answer = httpx.post(f"{server.url}/v1/models/{name}/predict", json={"inputs": [{"text": t} for t in texts]})
        assert answer.status_code == 200, answer.text
        expected = gk.load(model_dirs[name], progress=False).predict_records(texts)
        got = answer.json()["predictions"]
        assert [r["prediction"] for r in got] == [r["prediction"] for r in expected]
        for ours, theirs in zip(got, expected):
            for key, value in theirs.items():
                if isinstance(value, float):
                    assert ours[key] == pytest.approx(value, abs=1e-4), (name, key)
    # the fitted column name is accepted beside the modality, and a regression interval level is honoured
    wide = httpx.post(f"{server.url}/v1/models/score/predict", json={"inputs": [{"text": texts[0]}], "interval": 0.95})
    narrow = httpx.post(f"{server.url}/v1/models/score/predict", json={"inputs": [{"text": texts[0]}], "interval": 0.5})
    (w,), (n,) = wide.json()["predictions"], narrow.json()["predictions"]
    assert w["lower"] <= n["lower"] <= n["prediction"] <= n["upper"] <= w["upper"]


def test_adapters_share_one_base(served, model_dirs):
    assert [m.graft.batch_size for m in load_served({"s": model_dirs["sentiment"]}, batch_rows=64).values()] == [64]
    a, b = served["lora-a"], served["lora-b"]
    assert a.adapters is b.adapters and a.fitted().backbone_ is b.fitted().backbone_
    assert served["sentiment"].adapters is None
    texts = _texts(8)
    for name in ("lora-a", "lora-b", "lora-a"):  # switching back and forth
        alone = gk.load(model_dirs[name], progress=False).predict_proba(texts)
        np.testing.assert_allclose(served[name].fitted().predict_proba(texts), alone, atol=1e-5)


def test_image_and_audio_rows(server, model_dirs):
    pngs = [_png((200, 30, 30), 100), _png((30, 30, 200), 101)]
    answer = httpx.post(f"{server.url}/v1/models/colour/predict", json={"inputs": [{"image": _b64(p)} for p in pngs]})
    assert answer.status_code == 200, answer.text
    expected = gk.load(model_dirs["colour"], progress=False).predict_records(pngs)
    assert [r["prediction"] for r in answer.json()["predictions"]] == [r["prediction"] for r in expected]
    wavs = [_wav(300, 100), _wav(1200, 101)]
    answer = httpx.post(f"{server.url}/v1/models/pitch/predict", json={"inputs": [{"audio": _b64(w)} for w in wavs]})
    assert answer.status_code == 200, answer.text
    expected = gk.load(model_dirs["pitch"], progress=False).predict_records(wavs)
    assert [r["prediction"] for r in answer.json()["predictions"]] == [r["prediction"] for r in expected]


# -- micro-batching and load --------------------------------------------------------------------------------
def _load(url: str, name: str, clients: int, per_client: int) -> list[tuple[int, list, list]]:
    """``clients`` concurrent clients, each sending ``per_client`` requests of 1-3 rows; then it stops."""
    def client(k):
        rng = np.random.default_rng(k)
        out = []
        with httpx.Client(timeout=60) as http:
            for _ in range(per_client):
                texts = _texts(int(rng.integers(1, 4)), seed=int(rng.integers(1000)))
                answer = http.post(f"{url}/v1/models/{name}/predict", json={"inputs": [{"text": t} for t in texts]})
                out.append((answer.status_code, texts, answer.json().get("predictions")))
        return out

    with ThreadPoolExecutor(clients) as pool:
        return [r for rs in pool.map(client, range(clients)) for r in rs]


@pytest.mark.parametrize("name", ["sentiment", "lora-b"])
def test_bounded_load_test_zero_5xx_and_batched_answers_unchanged(server, model_dirs, name):
    before = server.batches(name)
    results = _load(server.url, name, clients=8, per_client=12)
    statuses = [status for status, _, _ in results]
    assert len(results) == 96 and statuses.count(200) == 96 and not [s for s in statuses if s >= 500]
    assert server.batches(name) - before < 96  # concurrent requests were merged into fewer forward passes
    model = gk.load(model_dirs[name], progress=False)
    for _, texts, predictions in results[:: 8]:
        expected = model.predict_records(texts)
        assert [r["prediction"] for r in predictions] == [r["prediction"] for r in expected]
        assert [r["p_pos"] for r in predictions] == pytest.approx([r["p_pos"] for r in expected], abs=1e-4)


def test_batching_off_runs_each_request_alone(served):
    settings_ = ServeSettings(batching=False)
    with Running(create_app({"sentiment": served["sentiment"]}, settings_), settings_) as running:
        assert httpx.get(f"{running.url}/health").json()["batching"] is False
        results = _load(running.url, "sentiment", clients=4, per_client=5)
        assert [s for s, _, _ in results] == [200] * 20
        assert running.batches("sentiment") == 20


def test_timeout_answers_504_and_the_server_goes_on(served):
    settings_ = ServeSettings(timeout_s=1e-4, max_wait_ms=50.0)
    with Running(create_app({"sentiment": served["sentiment"]}, settings_), settings_) as running:
        answer = httpx.post(f"{running.url}/v1/models/sentiment/predict", json={"inputs": [{"text": "good film"}]})
        assert answer.status_code == 504 and "no answer within" in answer.json()["error"]
        assert httpx.get(f"{running.url}/health").status_code == 200


# -- hostile requests --------------------------------------------------------------------------------------------
def _png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk claiming ``width`` x ``height`` (the pixels are never there)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


def _zip_bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("clip.wav", b"\0" * 20_000_000)  # 20 MB of zeros in ~20 kB
    return buffer.getvalue()


def _long_wav() -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(16000 * 6, dtype=np.float32), 16000, format="FLAC")  # 6 s > the 5 s limit
    return buffer.getvalue()


PREDICT = "/v1/models/sentiment/predict"
HOSTILE = [  # (what, path, body or raw bytes, headers, status, field)
    ("not JSON", PREDICT, b"{inputs: [", {}, 400, None),
    ("empty body", PREDICT, b"", {}, 400, None),
    ("not UTF-8", PREDICT, b"\xff\xfe\x00{", {}, 400, None),
    ("nested 100000 deep", PREDICT, b"[" * 100_000 + b"]" * 100_000, {}, 400, None),
    ("a JSON array", PREDICT, [{"text": "good"}], {}, 422, None),
    ("a JSON string", PREDICT, "good", {}, 422, None),
    ("no inputs", PREDICT, {"rows": [{"text": "good"}]}, {}, 422, "rows"),
    ("inputs null", PREDICT, {"inputs": None}, {}, 422, "inputs"),
    ("inputs a string", PREDICT, {"inputs": "good"}, {}, 422, "inputs"),
    ("inputs an object", PREDICT, {"inputs": {"text": "good"}}, {}, 422, "inputs"),
    ("inputs empty", PREDICT, {"inputs": []}, {}, 422, "inputs"),
    ("10,000 rows", PREDICT, {"inputs": [{"text": "good"}] * 10_000}, {}, 413, "inputs"),
    ("row a string", PREDICT, {"inputs": ["good"]}, {}, 422, "inputs[0]"),
    ("row a list", PREDICT, {"inputs": [{"text": "good"}, ["good"]]}, {}, 422, "inputs[1]"),
    ("text a number", PREDICT, {"inputs": [{"text": 3}]}, {}, 422, "inputs[0].text"),
    ("text null", PREDICT, {"inputs": [{"text": None}]}, {}, 422, "inputs[0].text"),
    ("text a list", PREDICT, {"inputs": [{"text": ["good"]}]}, {}, 422, "inputs[0].text"),
    ("text blank", PREDICT, {"inputs": [{"text": "  "}]}, {}, 422, "inputs[0].text"),
    ("text too long", PREDICT, {"inputs": [{"text": "good " * 5000}]}, {}, 413, "inputs[0].text"),
    ("missing column", PREDICT, {"inputs": [{}]}, {}, 422, "inputs[0].text"),
    ("unknown column", PREDICT, {"inputs": [{"txt": "good"}]}, {}, 422, "inputs[0].txt"),
    ("unknown top-level field", PREDICT, {"inputs": [{"text": "good"}], "debug": True}, {}, 422, "debug"),
    ("interval on a classifier", PREDICT, {"inputs": [{"text": "good"}], "interval": 0.9}, {}, 422, "interval"),
    ("interval out of range", "/v1/models/score/predict", {"inputs": [{"text": "good"}], "interval": 1.5}, {}, 422,
     "interval"),
    ("interval a string", "/v1/models/score/predict", {"inputs": [{"text": "good"}], "interval": "0.9"}, {}, 422,
     "interval"),
    ("oversized body", PREDICT, {"inputs": [{"text": "good"}], "pad": "x" * 3_000_000}, {}, 413, None),
    ("wrong content type", PREDICT, b'{"inputs": [{"text": "good"}]}', {"Content-Type": "text/plain"}, 415,
     "Content-Type"),
    ("unknown model", "/v1/models/nope/predict", {"inputs": [{"text": "good"}]}, {}, 404, "name"),
    ("model name ..", "/v1/models/../predict", {"inputs": [{"text": "good"}]}, {}, 404, None),
    ("traversal in the name", "/v1/models/..%2F..%2Fetc%2Fpasswd/predict", {"inputs": [{"text": "g"}]}, {}, 404,
     None),
    ("raw traversal", "/v1/models/../../etc/passwd/predict", {"inputs": [{"text": "g"}]}, {}, 404, None),
    ("GET on predict", PREDICT, None, {}, 405, None),
    ("unknown route", "/admin", {"inputs": []}, {}, 404, None),
    ("20000x20000 PNG header", "/v1/models/colour/predict", {"inputs": [{"image": _b64(_png_header(20000, 20000))}]},
     {}, 413, "inputs[0].image"),
    ("truncated PNG", "/v1/models/colour/predict", {"inputs": [{"image": _b64(_png_header(32, 32))}]}, {}, 422,
     "inputs[0].image"),
    ("image not base64", "/v1/models/colour/predict", {"inputs": [{"image": "not base64 !!"}]}, {}, 422,
     "inputs[0].image"),
    ("image a number", "/v1/models/colour/predict", {"inputs": [{"image": 7}]}, {}, 422, "inputs[0].image"),
    ("image a server path", "/v1/models/colour/predict", {"inputs": [{"image": "/etc/passwd"}]}, {}, 422,
     "inputs[0].image"),
    ("text sent to an image model", "/v1/models/colour/predict", {"inputs": [{"text": "good"}]}, {}, 422,
     "inputs[0].text"),
    ("image over the byte limit", "/v1/models/colour/predict", {"inputs": [{"image": _b64(b"\0" * 600_000)}]}, {},
     413, "inputs[0].image"),
    ("zip bomb as audio", "/v1/models/pitch/predict", {"inputs": [{"audio": _b64(_zip_bomb())}]}, {}, 422,
     "inputs[0].audio"),
    ("garbage as audio", "/v1/models/pitch/predict", {"inputs": [{"audio": _b64(os.urandom(4000))}]}, {}, 422,
     "inputs[0].audio"),
    ("clip over the duration limit", "/v1/models/pitch/predict", {"inputs": [{"audio": _b64(_long_wav())}]}, {}, 413,
     "inputs[0].audio"),
    ("WAV header only", "/v1/models/pitch/predict", {"inputs": [{"audio": _b64(b"RIFF\x24\0\0\0WAVEfmt ")}]}, {}, 422,
     "inputs[0].audio"),
]


def _send(server, path, body, headers):
    """A raw HTTP request (http.client keeps the path exactly as given: no '..' normalisation)."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        if body is None:
            connection.request("GET", path, headers=headers)
        else:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            connection.request("POST", path, body=raw, headers={"Content-Type": "application/json", **headers})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_hostile_requests_get_the_right_4xx(server, errors_logged):
    assert len(HOSTILE) >= 25
    for what, path, body, headers, status, field in HOSTILE:
        got, raw = _send(server, path, body, headers)
        assert got == status, (what, got, raw[:300])
        assert b"\n" not in raw.strip() and b"Traceback" not in raw, what  # one line, no stack trace
        answer = json.loads(raw)
        assert answer["status"] == status and answer["error"], what
        if field is not None:
            assert answer["field"] == field, (what, answer)
    # chunked upload with no Content-Length, past the body limit
    chunks = (b'{"inputs": [{"text": "' + b"x" * 65536 for _ in range(40))
    answer = httpx.post(f"{server.url}{PREDICT}", content=chunks, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert not errors_logged, [r.getMessage() for r in errors_logged]
    ok = httpx.post(f"{server.url}{PREDICT}", json={"inputs": [{"text": "good film"}]})
    assert ok.status_code == 200 and httpx.get(f"{server.url}/health").status_code == 200


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=12)
ROWS = st.lists(st.dictionaries(st.sampled_from(["text", "image", "txt", ""]), JSON_VALUES, max_size=2), max_size=4)
BODIES = st.one_of(JSON_VALUES, st.fixed_dictionaries({"inputs": ROWS}),
                   st.fixed_dictionaries({"inputs": ROWS}, optional={"interval": JSON_VALUES}))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(body=BODIES, model=st.sampled_from(["sentiment", "score", "colour"]))
def test_generated_json_bodies_never_get_a_5xx(server, body, model):
    answer = httpx.post(f"{server.url}/v1/models/{model}/predict", json=body)
    assert answer.status_code in ((400,) if body is None else (200, 413, 422)), answer.text  # null: empty body
    assert "\n" not in answer.text.strip()
    if answer.status_code == 200:
        assert len(answer.json()["predictions"]) == len(body["inputs"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=3000), header=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"RIFF", b"fLaC",
                                                                        b"PK\x03\x04", b"OggS", b"\xff\xd8\xff"]),
       model=st.sampled_from(["colour", "pitch"]))
def test_generated_media_bytes_get_a_4xx_naming_the_row(server, data, header, model):
    column = "image" if model == "colour" else "audio"
    answer = httpx.post(f"{server.url}/v1/models/{model}/predict",
                        json={"inputs": [{column: _b64(header + data)}]})
    assert answer.status_code in (200, 413, 422), answer.text
    if answer.status_code != 200:
        assert answer.json()["field"] in (f"inputs[0].{column}", "inputs")


def test_bearer_token(served, errors_logged):
    settings_ = ServeSettings(api_key="s3cret-token-0123456789")
    with Running(create_app({"sentiment": served["sentiment"]}, settings_), settings_) as running:
        body = {"inputs": [{"text": "good"}]}
        cases = [({}, 401), ({"Authorization": "Bearer wrong-token"}, 401), ({"Authorization": "Basic czNjcmV0"}, 401),
                 ({"Authorization": "Bearer"}, 401), ({"Authorization": "bearer s3cret-token-012345678"}, 401),
                 ({"Authorization": "Bearer s3cret-token-0123456789"}, 200)]
        for headers, status in cases:
            answer = httpx.post(f"{running.url}{PREDICT}", json=body, headers=headers)
            assert answer.status_code == status, (headers, answer.text)
            if status == 401:
                assert answer.json()["field"] == "Authorization" and answer.headers["www-authenticate"] == "Bearer"
        assert httpx.get(f"{running.url}/v1/models").status_code == 401
        assert httpx.get(f"{running.url}/health").status_code == 200  # liveness stays open
    assert not errors_logged


# -- the command -------------------------------------------------------------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serves_and_shuts_down_gracefully(model_dirs, tmp_path):
    key = tmp_path / "key"
    key.write_text("a-long-enough-token-1234\n")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(gk.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    # a 3 s batching window keeps the request in flight while SIGTERM arrives
    process = subprocess.Popen([sys.executable, "-m", "graftkit.cli.main", "serve", f"intent={model_dirs['sentiment']}",
                                "--port", str(port), "--api-key-file", str(key), "--max-wait-ms", "3000"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "graftkit serve did not come up"
                time.sleep(0.2)
        headers = {"Authorization": "Bearer a-long-enough-token-1234"}
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(httpx.post, f"{url}/v1/models/intent/predict", headers=headers, timeout=30,
                                  json={"inputs": [{"text": "good great film"}]})
            time.sleep(1.0)
            process.send_signal(signal.SIGTERM)
            answer = pending.result()
        assert answer.status_code == 200 and answer.json()["predictions"][0]["prediction"] in ("pos", "neg")
        # uvicorn re-raises the signal once shut down, so a supervisor sees the process end by SIGTERM
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
    stderr = process.stderr.read()
    assert "Traceback" not in stderr and "stopped after 1 forward passes" in stderr
    access = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert {"method": "POST", "path": "/v1/models/intent/predict", "status": 200, "model": "intent",
            "rows": 1}.items() <= access[-1].items()


def test_cli_refuses_bad_arguments(model_dirs, tmp_path, capsys):
    from graftkit.cli.main import main

    assert main(["serve", str(tmp_path / "absent")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["serve", f"a/b={model_dirs['sentiment']}"]) == 2
    assert "does not exist" in capsys.readouterr().err  # not a NAME=DIR pair: read as a path
    short = tmp_path / "short"
    short.write_text("abc")
    assert main(["serve", str(model_dirs["sentiment"]), "--api-key-file", str(short)]) == 2
    assert "at least 16" in capsys.readouterr().err
    assert main(["serve", f"x={model_dirs['sentiment']}", f"x={model_dirs['score']}"]) == 2
    assert "both named 'x'" in capsys.readouterr().err
