"""``graftkit export --format onnx`` (issue 15): one ONNX graph (backbone + pooling + head) that onnxruntime runs
to the PyTorch model's answers (fp32 within the tolerance, int8 by label agreement), refusals that write nothing,
and ``predict`` / ``serve`` with ``--runtime onnx``. Everything on the 2-layer tiny BERT."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import sentiment_frame

import graftkit as gk
from graftkit.cli.main import main
from graftkit.errors import ArtifactError, ConfigError
from graftkit.export import export_onnx, load_onnx

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"progress": False, "use_cache": False}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, tiny_bert_dir):
    root = tmp_path_factory.mktemp("to-export")
    texts = sentiment_frame(60)
    table = gk.load_data(texts, text="text", label="label")
    scored = texts.assign(score=(texts["label"] == "pos").astype(float) * 4 + 1).drop(columns="label")
    return {
        "probe": gk.Graft(str(tiny_bert_dir), **FAST).fit(table).save(root / "probe"),
        "lora": gk.Graft(str(tiny_bert_dir), strategy="lora", epochs=2, batch_size=8, patience=0, val_size=0.0,
                         learning_rate=0.02, **FAST).fit(table).save(root / "lora"),
        "regression": gk.Graft(str(tiny_bert_dir), task="regression", **FAST)
        .fit(gk.load_data(scored, text="text", label="score")).save(root / "regression"),
        "mlp": gk.Graft(str(tiny_bert_dir), head="mlp", **FAST).fit(table).save(root / "mlp"),
    }


def _texts(n=20):
    return sentiment_frame(n, seed=9)["text"].tolist()


@pytest.mark.parametrize("name", ["probe", "lora", "regression"])
def test_fp32_graph_reproduces_pytorch(fitted, name, tmp_path):
    out = tmp_path / "onnx"
    check = export_onnx(fitted[name], out)
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "onnx.json", "tokenizer"]
    assert check["max_abs_diff_raw"] <= 1e-3 and check["prediction_agreement"] == 1.0
    onnx_model, torch_model = load_onnx(out), gk.load(fitted[name], progress=False)
    texts = _texts()
    np.testing.assert_allclose(onnx_model.outputs(texts), torch_model.outputs(texts), atol=1e-4)
    ours, theirs = onnx_model.predict(texts), torch_model.predict(texts)
    assert ours == (pytest.approx(theirs, abs=1e-4) if name == "regression" else theirs)
    for ours, theirs in zip(onnx_model.predict_records(texts), torch_model.predict_records(texts)):
        assert ours.keys() == theirs.keys()


def test_int8_graph_is_smaller_and_agrees(fitted, tmp_path):
    export_onnx(fitted["probe"], tmp_path / "fp32")
    check = export_onnx(fitted["probe"], tmp_path / "int8", quantize="int8", min_agreement=0.5)
    spec = json.loads((tmp_path / "int8" / "onnx.json").read_text())
    assert spec["quantize"] == "int8" and spec["check"] == check and check["prediction_agreement"] >= 0.5
    int8_bytes = (tmp_path / "int8" / "model.onnx").stat().st_size
    assert int8_bytes < (tmp_path / "fp32" / "model.onnx").stat().st_size
    outputs = load_onnx(tmp_path / "int8").outputs(_texts())
    assert outputs.shape == (20, 2) and np.allclose(outputs.sum(axis=1), 1.0)


def test_refusals_write_nothing(fitted, tmp_path, tiny_vit_dir):
    out = tmp_path / "onnx"
    with pytest.raises(ArtifactError, match="differ from PyTorch's by up to .* nothing was written"):
        export_onnx(fitted["probe"], out, tolerance=1e-12)
    with pytest.raises(ArtifactError, match=r"agrees with PyTorch on .* \(at least 101% required\)"):
        export_onnx(fitted["probe"], out, quantize="int8", min_agreement=1.01)
    with pytest.raises(ConfigError, match="not linear in the features"):
        export_onnx(fitted["mlp"], out)
    assert list(tmp_path.iterdir()) == []  # no export, no staging directory left behind
    images = pd.DataFrame({"image": [np.full((8, 8, 3), 40 * i, np.uint8) for i in range(6)],
                           "label": ["a", "b"] * 3})
    from PIL import Image

    images["image"] = [Image.fromarray(a) for a in images["image"]]
    vision = gk.Graft(str(tiny_vit_dir), **FAST).fit(gk.load_data(images, image="image", label="label"))
    with pytest.raises(ConfigError, match="covers text models"):
        export_onnx(vision.save(tmp_path / "vision"), out)
    export_onnx(fitted["probe"], out)
    with pytest.raises(ArtifactError, match="already holds an ONNX export; pass --overwrite"):
        export_onnx(fitted["probe"], out)
    export_onnx(fitted["probe"], out, overwrite=True)
    with pytest.raises(ArtifactError, match="is not an ONNX export"):
        export_onnx(fitted["probe"], tmp_path / "vision")  # never written over a model directory
    (out / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(ArtifactError, match="does not load in onnxruntime"):
        load_onnx(out)


def test_cli_export_and_predict_with_onnx_runtime(fitted, tmp_path, capsys):
    data = tmp_path / "new.csv"
    pd.DataFrame({"text": _texts()}).to_csv(data, index=False)
    out = tmp_path / "onnx"
    assert main(["export", str(fitted["probe"]), "--format", "onnx", "-o", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["prediction_agreement"] == 1.0
    assert main(["predict", str(fitted["probe"]), str(data), "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    assert main(["predict", str(out), str(data), "--runtime", "onnx", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [r["prediction"] for r in got] == [r["prediction"] for r in expected]
    assert [r["p_pos"] for r in got] == pytest.approx([r["p_pos"] for r in expected], abs=1e-4)
    assert main(["predict", str(out), str(data)]) == 2
    assert "is an ONNX export; pass --runtime onnx" in capsys.readouterr().err
    assert main(["predict", str(fitted["probe"]), str(data), "--runtime", "onnx"]) == 2
    assert "it is not an ONNX export" in capsys.readouterr().err
    assert main(["export", str(fitted["probe"]), "--format", "onnx", "-o", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err


def test_serve_runs_an_onnx_export(fitted, tmp_path):
    from test_serve import Running

    from graftkit.serving import ServeSettings, create_app, load_served

    export_onnx(fitted["probe"], tmp_path / "onnx")
    served = load_served({"intent": tmp_path / "onnx"}, runtime="onnx")
    settings = ServeSettings()
    with Running(create_app(served, settings), settings) as running:
        (info,) = httpx.get(f"{running.url}/v1/models").json()["models"]
        assert info["runtime"] == "onnx" and info["labels"] == ["neg", "pos"]
        texts = _texts(5)
        answer = httpx.post(f"{running.url}/v1/models/intent/predict", json={"inputs": [{"text": t} for t in texts]})
        assert answer.status_code == 200, answer.text
        expected = gk.load(fitted["probe"], progress=False).predict(texts)
        assert [r["prediction"] for r in answer.json()["predictions"]] == expected
