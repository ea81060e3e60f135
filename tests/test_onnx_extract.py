"""Frozen text features on onnxruntime (features/runtime.py, backbones/onnx_text.py): equal to PyTorch's, filed
under their own cache key, recorded in the manifest, exported once per backbone identity and reused, and every
failure to export or to match falls back to PyTorch with one warning."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from conftest import sentiment_frame

import graftkit as gk
from graftkit.backbones import onnx_text
from graftkit.errors import ConfigError
from graftkit.features import runtime as runtime_module
from graftkit.features.extract import extract_features
from graftkit.features.runtime import INT8_MIN_COSINE, TOLERANCE, frozen_runtime
from graftkit.manifest import sign

FALLBACK = "onnxruntime is not used"


@pytest.fixture
def own_graphs(tmp_path, monkeypatch):
    """A graph folder of this test alone (exports counted, failures recorded without touching other tests)."""
    folder = tmp_path / "graphs"
    monkeypatch.setattr(onnx_text, "default_graph_dir", lambda: folder)
    return folder


@pytest.fixture
def exports(monkeypatch) -> list:
    """Every call of the one export function, which still exports."""
    calls, original = [], onnx_text.export_graph
    monkeypatch.setattr(onnx_text, "export_graph", lambda *a, **k: calls.append(a[-1]) or original(*a, **k))
    return calls


def _table(n: int = 40):
    return gk.load_data(sentiment_frame(n), text="text", label="label")


def _fallbacks(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and FALLBACK in r.getMessage()]


@pytest.mark.parametrize("options", [{}, {"pooling": "cls", "normalize": False}])
def test_onnx_features_equal_torch(tiny_bert_dir, options):
    table = _table()
    model = gk.Graft(str(tiny_bert_dir), extract_runtime="onnx", use_cache=False, progress=False,
                     backbone_options=options)
    features = model.features(table)
    assert model.runtime_.name == "onnx" and model.runtime_._embedder is not None
    reference = extract_features(model.loaded_backbone(), list(table.items()), progress=False)
    np.testing.assert_allclose(features, reference, atol=TOLERANCE / 10)


def test_cache_key_differs_by_runtime_and_a_lone_ranked_candidate_shares_it(tiny_bert_dir, tmp_path):
    cache, table, spec = tmp_path / "cache", _table(), str(tiny_bert_dir)
    on_torch = gk.Graft(spec, extract_runtime="torch", cache_dir=cache, progress=False)
    on_torch.features(table)
    on_onnx = gk.Graft(spec, extract_runtime="onnx", cache_dir=cache, progress=False)
    on_onnx.features(table)
    assert on_torch.last_extraction_["embedded"] == on_onnx.last_extraction_["embedded"] == len(table)
    torch_key, onnx_key = on_torch.runtime_.feature_key(), on_onnx.runtime_.feature_key()
    assert torch_key == on_torch.loaded_backbone().fingerprint()  # the key every earlier cache used
    assert {p.name for p in cache.iterdir()} == {torch_key[:32], onnx_key[:32]}
    # the default (auto) is onnxruntime here and reads the onnx rows; so does ranking the backbone alone
    again = gk.Graft(spec, cache_dir=cache, progress=False)
    again.features(table)
    assert again.runtime_.name == "onnx" and again.last_extraction_["embedded"] == 0
    ranking = gk.rank(table, [spec], cache_dir=cache, progress=False, scores=["logme"])
    assert ranking.rows[0]["extraction"]["embedded"] == 0


def test_graph_exported_once_and_reused(tiny_bert_dir, own_graphs, exports, caplog):
    caplog.set_level(logging.INFO)
    table = _table()
    first = gk.Graft(str(tiny_bert_dir), use_cache=False, progress=False)
    features = first.features(table)
    assert first.runtime_.name == "onnx" and len(exports) == 1
    [graph] = own_graphs.glob(f"*/{onnx_text.GRAPH}")
    written = graph.stat().st_mtime_ns
    second = gk.Graft(str(tiny_bert_dir), use_cache=False, progress=False)  # a new backbone, as in a new process
    np.testing.assert_array_equal(second.features(table), features)
    assert second.runtime_.name == "onnx" and len(exports) == 1 and graph.stat().st_mtime_ns == written
    assert [p.name for p in graph.parent.iterdir()] == [onnx_text.GRAPH]  # atomic: no temporary file left
    # another pooling is another graph
    gk.Graft(str(tiny_bert_dir), use_cache=False, progress=False, backbone_options={"pooling": "cls"}).features(table)
    assert len(exports) == 2 and len(list(own_graphs.glob(f"*/{onnx_text.GRAPH}"))) == 2
    assert not _fallbacks(caplog)


def test_a_damaged_cached_graph_is_exported_again(tiny_bert_dir, own_graphs, exports, caplog):
    table = _table(8)
    gk.Graft(str(tiny_bert_dir), use_cache=False, progress=False).features(table)
    [graph] = own_graphs.glob(f"*/{onnx_text.GRAPH}")
    graph.write_bytes(graph.read_bytes()[:100])
    model = gk.Graft(str(tiny_bert_dir), use_cache=False, progress=False)
    model.features(table)
    assert model.runtime_.name == "onnx" and len(exports) == 2 and not _fallbacks(caplog)
    assert any("does not run" in r.getMessage() and "exported again" in r.getMessage() for r in caplog.records)


def test_export_failure_falls_back_to_torch_with_one_warning(tiny_bert_dir, own_graphs, monkeypatch, caplog, tmp_path):
    calls = []

    def unsupported(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("Exporting the operator 'aten::made_up' to ONNX opset 17 is not supported")

    monkeypatch.setattr(onnx_text, "export_graph", unsupported)
    cache, table = tmp_path / "cache", _table()
    model = gk.Graft(str(tiny_bert_dir), cache_dir=cache, progress=False)
    features = model.features(table)
    [warning] = _fallbacks(caplog)
    assert "aten::made_up" in warning and "RuntimeError" in warning
    assert model.runtime_.name == "torch" and model.extraction_runtime() == "torch"
    np.testing.assert_array_equal(features, extract_features(model.loaded_backbone(), list(table.items()),
                                                             progress=False))
    # filed under PyTorch's key, although onnxruntime was planned when the lookup started
    assert [p.name for p in cache.iterdir()] == [model.loaded_backbone().fingerprint()[:32]]
    # the failure is recorded: the next model goes straight to PyTorch, exports nothing, warns no more
    again = gk.Graft(str(tiny_bert_dir), cache_dir=cache, progress=False)
    again.features(table)
    assert again.runtime_.name == "torch" and again.last_extraction_["embedded"] == 0
    assert len(calls) == 1 and len(_fallbacks(caplog)) == 1
    with pytest.raises(ConfigError, match="extract_runtime must be one of auto, torch, onnx"):
        gk.Graft(str(tiny_bert_dir), extract_runtime="ort").loaded_backbone()


def test_features_that_do_not_match_fall_back(tiny_bert_dir, own_graphs, monkeypatch, caplog):
    original = onnx_text.OnnxEmbedder.__call__
    monkeypatch.setattr(onnx_text.OnnxEmbedder, "__call__", lambda self, batch: original(self, batch) + 1e-2)
    table = _table()
    model = gk.Graft(str(tiny_bert_dir), use_cache=False, progress=False)
    features = model.features(table)
    [warning] = _fallbacks(caplog)
    assert "differ from PyTorch's on the first batch" in warning and f"tolerance {TOLERANCE:g}" in warning
    np.testing.assert_array_equal(features, extract_features(model.loaded_backbone(), list(table.items()),
                                                             progress=False))
    assert "differ" in json.loads(next(own_graphs.glob(f"*/{onnx_text.FAILED}")).read_text())["reason"]


def test_manifest_records_the_runtime_and_load_runs_it(tiny_bert_dir, tmp_path):
    table = _table()
    probe = gk.Graft(str(tiny_bert_dir), progress=False).fit(table)
    probe.save(tmp_path / "probe")
    manifest = json.loads((tmp_path / "probe" / "manifest.json").read_text())
    assert manifest["backbone"]["runtime"] == "onnx" and manifest["versions"]["onnxruntime"]
    loaded = gk.load(tmp_path / "probe", progress=False)
    assert loaded.extract_runtime == "auto"
    np.testing.assert_allclose(loaded.predict_proba(table), probe.predict_proba(table), atol=1e-6)
    assert loaded.runtime_.name == "onnx"
    # a manifest from before the runtime was recorded ran on PyTorch, and loads so
    del manifest["backbone"]["runtime"]
    manifest["digest"] = sign({k: v for k, v in manifest.items() if k != "digest"})
    (tmp_path / "probe" / "manifest.json").write_text(json.dumps(manifest))
    assert gk.load(tmp_path / "probe", progress=False).extract_runtime == "torch"
    assert gk.load(tmp_path / "probe", progress=False, extract_runtime="onnx").extract_runtime == "onnx"
    # fine-tuning and a fine-tuned backbone's features are PyTorch's
    tuned = gk.Graft(str(tiny_bert_dir), strategy="finetune", epochs=1, patience=0, progress=False).fit(table)
    assert tuned.extraction_runtime() == "torch"
    tuned.save(tmp_path / "tuned")
    assert json.loads((tmp_path / "tuned" / "manifest.json").read_text())["backbone"]["runtime"] == "torch"


def test_onnx_session_follows_the_thread_setting(tiny_bert_dir):
    model = gk.Graft(str(tiny_bert_dir), extract_runtime="onnx", use_cache=False, progress=False)
    model.features(_table(8))
    embedder = model.runtime_._embedder
    threads = torch.get_num_threads()
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            model.features(_table(8))
            assert embedder.session().get_session_options().intra_op_num_threads == count
    finally:
        torch.set_num_threads(threads)


def test_onnx_refused_where_it_cannot_run(tiny_vit_dir, tiny_bert_dir):
    vit = gk.Graft(str(tiny_vit_dir)).loaded_backbone()
    assert frozen_runtime(vit).name == "torch"  # auto: PyTorch, quietly
    with pytest.raises(ConfigError, match=r"cannot embed backbone .* hf-text\); use --extract-runtime auto or torch"):
        frozen_runtime(vit, "onnx")
    bert = gk.Graft(str(tiny_bert_dir)).loaded_backbone()
    assert frozen_runtime(bert, "torch").name == "torch" and frozen_runtime(bert).name == "onnx"


def test_int8_features_are_close_filed_apart_and_keep_the_down_projections_fp32(tiny_bert_dir, own_graphs, tmp_path,
                                                                                 caplog):
    import onnx

    cache, table = tmp_path / "cache", _table()
    fp32 = gk.Graft(str(tiny_bert_dir), extract_runtime="onnx", cache_dir=cache, progress=False)
    int8 = gk.Graft(str(tiny_bert_dir), extract_runtime="onnx-int8", cache_dir=cache, progress=False)
    exact, close = fp32.features(table), int8.features(table)
    assert int8.runtime_.name == "onnx-int8" and not _fallbacks(caplog)
    cosine = (exact * close).sum(1) / (np.linalg.norm(exact, axis=1) * np.linalg.norm(close, axis=1))
    assert cosine.min() >= INT8_MIN_COSINE and not np.allclose(exact, close, atol=TOLERANCE)  # close, not equal
    assert int8.runtime_.feature_key() != fp32.runtime_.feature_key() and len(list(cache.iterdir())) == 2
    [graph] = own_graphs.glob(f"*/{onnx_text.INT8_GRAPH}")
    nodes = onnx.load(str(graph)).graph
    weights = {init.name: tuple(init.dims) for init in nodes.initializer}
    kept = [n for n in nodes.node if n.op_type == "MatMul" and len(weights.get(n.input[1], ())) == 2]
    assert any(n.op_type == "MatMulInteger" for n in nodes.node)  # int8 where it is safe ...
    assert kept and all(weights[n.input[1]][0] > weights[n.input[1]][1] for n in kept)  # ... the 4h -> h stay fp32
    assert not any(r.name == "root" for r in caplog.records)  # the quantiser's advice on the root logger is dropped


def test_int8_that_does_not_match_falls_back_and_leaves_the_fp32_graph_on(tiny_bert_dir, own_graphs, monkeypatch,
                                                                          caplog):
    monkeypatch.setattr(runtime_module, "INT8_MIN_COSINE", 1.01)  # no int8 feature can pass
    table = _table(8)
    model = gk.Graft(str(tiny_bert_dir), extract_runtime="onnx-int8", use_cache=False, progress=False)
    features = model.features(table)
    [warning] = _fallbacks(caplog)
    assert "min cosine 1.01 for int8" in warning and model.extraction_runtime() == "torch"
    np.testing.assert_array_equal(features, extract_features(model.loaded_backbone(), list(table.items()),
                                                             progress=False))
    [record] = own_graphs.glob("*/failed.int8.json")
    assert not (record.parent / onnx_text.FAILED).exists()
    backbone = model.loaded_backbone()
    assert frozen_runtime(backbone, "onnx-int8").name == "torch"  # recorded: the next run skips int8 ...
    assert frozen_runtime(backbone, "onnx").name == "onnx"  # ... and the exact fp32 graph still runs


def test_a_model_fitted_on_int8_predicts_on_int8(tiny_bert_dir, tmp_path, tiny_vit_dir):
    table = _table()
    probe = gk.Graft(str(tiny_bert_dir), extract_runtime="onnx-int8", progress=False).fit(table)
    probe.save(tmp_path / "probe")
    assert json.loads((tmp_path / "probe" / "manifest.json").read_text())["backbone"]["runtime"] == "onnx-int8"
    loaded = gk.load(tmp_path / "probe", progress=False)
    np.testing.assert_allclose(loaded.predict_proba(table), probe.predict_proba(table), atol=1e-6)
    assert loaded.extract_runtime == "onnx-int8" and loaded.runtime_.name == "onnx-int8"
    vit = gk.Graft(str(tiny_vit_dir)).loaded_backbone()
    with pytest.raises(ConfigError, match="extract_runtime 'onnx-int8' cannot embed backbone"):
        frozen_runtime(vit, "onnx-int8")


def test_cli_fit_takes_onnx_int8(tiny_bert_dir, tmp_path):
    from graftkit.cli.main import main

    data = tmp_path / "reviews.csv"
    sentiment_frame(24).to_csv(data, index=False)
    out = tmp_path / "model"
    assert main(["fit", str(data), "--backbone", str(tiny_bert_dir), "--extract-runtime", "onnx-int8", "--test-size",
                 "0", "--no-calibration", "-o", str(out)]) == 0
    assert json.loads((out / "manifest.json").read_text())["backbone"]["runtime"] == "onnx-int8"
