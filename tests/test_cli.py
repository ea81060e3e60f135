"""The CLI end to end on the tiny BERT: fit -> predict -> evaluate, with predict and evaluate in a new
process (and a cold feature cache) giving the fitting process's exact predictions and metrics; JSON
outputs; cv mean ± std; models; --help of every command; what the artifact directory holds."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import sentiment_frame
from graftkit.cli.main import build_parser, main

ARTIFACT_FILES = {"manifest.json", "head.safetensors", "labels.json", "README.md"}


def graftkit_command() -> list[str]:
    """The installed console script where there is one, else the module."""
    script = Path(sys.executable).with_name("graftkit")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "graftkit.cli.main"]


def run_new_process(*argv: str, cache: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if cache is not None:
        env["GRAFTKIT_CACHE"] = str(cache)
    result = subprocess.run([*graftkit_command(), *argv], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def run_here(capsys, *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@pytest.fixture
def split_files(tmp_path) -> tuple[Path, Path]:
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    sentiment_frame(60, seed=0).to_csv(train, index=False)
    sentiment_frame(24, seed=1).to_csv(test, index=False)
    return train, test


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- fit -> predict -> evaluate across processes ---------------------------------------------------------------
def test_fit_then_predict_and_evaluate_in_new_processes(tmp_path, split_files, tiny_bert_dir, capsys):
    from graftkit.loading import load_model
    from graftkit.data import load_data

    train, test = split_files
    model_dir = tmp_path / "runs" / "sentiment"
    fitted = json.loads(run_here(capsys, "fit", str(train), "--test", str(test), "--backbone", str(tiny_bert_dir),
                                 "--C", "1", "--json", "-o", str(model_dir)))
    assert fitted["output"] == str(model_dir)
    assert fitted["test"]["n"] == 24 and fitted["train"]["n"] == 60

    # the fitting process's own predictions on the test file (features from this process's cache)
    here = load_model(model_dir, progress=False)
    expected = here.predict_proba(load_data(test))
    labels = [here.task_.labels[i] for i in expected.argmax(axis=1)]
    assert len(set(labels)) == 2, "a constant predictor would make the comparison below vacuous"

    predicted = json.loads(run_new_process("predict", str(model_dir), str(test), "--json", "--no-cache").stdout)
    assert [row["prediction"] for row in predicted] == labels
    assert [row["row"] for row in predicted] == list(range(1, 25))
    got = np.array([[row["p_neg"], row["p_pos"]] for row in predicted])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)  # the CLI rounds to 6 decimals

    evaluated = json.loads(run_new_process("evaluate", str(model_dir), str(test), "--json",
                                           cache=tmp_path / "cold-cache").stdout)
    assert evaluated == fitted["test"]
    assert evaluated["confusion_matrix"]["labels"] == ["neg", "pos"]

    out_csv = tmp_path / "preds" / "test-predictions.csv"
    run_new_process("predict", str(model_dir), str(test), "-o", str(out_csv), "--no-cache")
    frame = pd.read_csv(out_csv)
    assert frame.columns.tolist() == ["row", "prediction", "p_neg", "p_pos"]
    assert frame["prediction"].tolist() == labels
    assert sorted(p.name for p in out_csv.parent.iterdir()) == ["test-predictions.csv"]


def test_predict_overwrite_and_stdout(tmp_path, split_files, tiny_bert_dir, capsys):
    train, test = split_files
    model_dir = tmp_path / "model"
    run_here(capsys, "fit", str(train), "--backbone", str(tiny_bert_dir), "--C", "1", "--test-size", "0",
             "-o", str(model_dir))
    as_csv = run_here(capsys, "predict", str(model_dir), str(test))
    frame = pd.read_csv(io.StringIO(as_csv))
    assert len(frame) == 24 and set(frame["prediction"]) <= {"neg", "pos"}
    target = tmp_path / "preds.csv"
    target.write_text("old\n")
    run_here(capsys, "predict", str(model_dir), str(test), "-o", str(target), "--overwrite")
    assert pd.read_csv(target)["prediction"].tolist() == frame["prediction"].tolist()


def test_predict_on_unlabelled_data_uses_the_fitted_columns(tmp_path, split_files, tiny_bert_dir, capsys):
    train, _ = split_files
    frame = pd.read_csv(train).rename(columns={"text": "review", "label": "stars"})
    frame.to_csv(train, index=False)
    model_dir = tmp_path / "model"
    run_here(capsys, "fit", str(train), "--text", "review", "--label", "stars", "--backbone", str(tiny_bert_dir),
             "--C", "1", "--test-size", "0", "-o", str(model_dir))
    new = tmp_path / "new.csv"
    pd.DataFrame({"id": [1, 2], "review": ["good great love", "awful bad hate"]}).to_csv(new, index=False)
    rows = json.loads(run_here(capsys, "predict", str(model_dir), str(new), "--json"))
    assert len(rows) == 2 and all(set(row) == {"row", "prediction", "p_neg", "p_pos"} for row in rows)


# -- the artifact -------------------------------------------------------------------------------------------------
def test_artifact_directory_contents(tmp_path, sentiment_csv, tiny_bert_dir, capsys):
    from graftkit.data import load_data

    model_dir = tmp_path / "model"
    result = json.loads(run_here(capsys, "fit", str(sentiment_csv), "--backbone", str(tiny_bert_dir), "--C", "1",
                                 "--seed", "3", "--json", "-o", str(model_dir)))
    files = {p.name for p in model_dir.iterdir()}
    assert files == ARTIFACT_FILES | {"evaluation.json"}  # fit held out --test-size: its evaluation record
    for path in model_dir.iterdir():
        assert path.suffix not in (".pkl", ".pickle", ".pt", ".pth", ".bin", ".joblib")
        assert not path.read_bytes().startswith(b"\x80"), f"{path.name} looks like a pickle"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging left

    manifest = json.loads((model_dir / "manifest.json").read_text())
    source = manifest["backbone"]["source"]
    assert source["kind"] == "local" and source["path"] == str(tiny_bert_dir.resolve())
    pinned = {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"}
    assert pinned <= set(source["files"])  # weights and the processing files that shape the features
    assert all(source["files"][name] == sha256(tiny_bert_dir / name) for name in pinned)
    assert manifest["backbone"]["settings"]["pooling"] == "mean"
    assert manifest["strategy"]["name"] == "linear-probe" and manifest["strategy"]["C"] == 1.0
    assert manifest["seed"] == 3 and manifest["hyperparameters"]["seed"] == 3
    assert {"python", "graftkit", "torch", "transformers", "numpy"} <= set(manifest["versions"])
    assert manifest["versions"]["graftkit"]
    assert manifest["task"] == {"kind": "classification", "labels": ["neg", "pos"]}
    assert manifest["input"] == {"modality": "text", "column": "text", "label_column": "label"}

    table = load_data(sentiment_csv)
    train, _ = table.split(test_size=0.2, seed=3)
    assert manifest["data"]["fingerprint"] == train.fingerprint()
    assert manifest["data"]["rows"] == 48 and manifest["data"]["class_counts"] == {"neg": 24, "pos": 24}
    assert manifest["metrics"]["train"]["n"] == 48
    assert manifest["metrics"]["test"] == {k: result["test"][k] for k in ("n", "accuracy", "macro_f1")}
    assert manifest["files"] == {name: sha256(model_dir / name) for name in ("head.safetensors", "labels.json")}
    assert json.loads((model_dir / "labels.json").read_text()) == ["neg", "pos"]

    card = (model_dir / "README.md").read_text()
    assert card.startswith("# graftkit model")
    assert str(tiny_bert_dir.resolve()) in card and "linear-probe" in card and "| test | 12 |" in card


def test_refit_with_overwrite_replaces_the_model(tmp_path, sentiment_csv, tiny_bert_dir, capsys):
    model_dir = tmp_path / "model"
    common = ("fit", str(sentiment_csv), "--backbone", str(tiny_bert_dir), "--test-size", "0", "-o", str(model_dir))
    run_here(capsys, *common, "--C", "1")
    run_here(capsys, *common, "--C", "0.01", "--overwrite")
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["strategy"]["C"] == 0.01
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model", "reviews.csv"])


# -- cv -----------------------------------------------------------------------------------------------------------
def test_cv_reports_mean_and_std(sentiment_csv, tiny_bert_dir, capsys):
    text = run_here(capsys, "cv", str(sentiment_csv), "--backbone", str(tiny_bert_dir), "--folds", "3", "--C", "1")
    for name in ("accuracy", "macro_f1"):
        line = next(line for line in text.splitlines() if line.startswith(name))
        match = re.match(rf"{name}\s+(\d\.\d{{4}}) ± (\d\.\d{{4}})  over 3 folds  \((.*)\)$", line)
        assert match, line
        values = [float(v) for v in match.group(3).split(", ")]
        assert len(values) == 3
        assert float(match.group(1)) == pytest.approx(np.mean(values), abs=1e-4)
        assert float(match.group(2)) == pytest.approx(np.std(values, ddof=1), abs=1e-4)

    result = json.loads(run_here(capsys, "cv", str(sentiment_csv), "--backbone", str(tiny_bert_dir), "--folds", "3",
                                 "--C", "1", "--json"))
    assert [fold["fold"] for fold in result["folds"]] == [1, 2, 3]
    assert sum(fold["n_test"] for fold in result["folds"]) == 60
    accuracies = [fold["accuracy"] for fold in result["folds"]]
    assert result["summary"]["accuracy"]["values"] == accuracies
    assert result["summary"]["accuracy"]["mean"] == pytest.approx(np.mean(accuracies))


# -- models and help ----------------------------------------------------------------------------------------------
def test_models_json_lists_the_packaged_minilm(capsys):
    rows = json.loads(run_here(capsys, "models", "--json"))
    minilm = next(row for row in rows if row["name"] == "all-MiniLM-L6-v2")
    assert minilm["installed"] is True and minilm["source"] == "package"
    assert (Path(minilm["where"]) / "config.json").is_file()
    text = run_here(capsys, "models")
    assert re.search(r"all-MiniLM-L6-v2\s+package\s+ready", text)


def _commands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(action.choices)


def test_every_command_is_covered_by_help():
    assert {"fit", "cv", "predict", "evaluate", "models", "demo"} <= set(_commands())


@pytest.mark.parametrize("command", _commands())
def test_help_exits_zero_and_shows_an_example(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out
    assert re.search(rf"^\s+graftkit {command}\b", out, re.MULTILINE), out


def test_top_level_help_and_no_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and all(command in out for command in _commands())
    assert main([]) == 2  # no command: the help, and a usage exit code


def test_console_script_runs(tmp_path):
    result = run_new_process("--version")
    assert re.match(r"graftkit \d+\.\d+", result.stdout)
