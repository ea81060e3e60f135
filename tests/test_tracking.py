"""``--track mlflow`` (issue 15): a fit's parameters, per-epoch history, final metrics, evaluation record and report
land in an MLflow run, and its pyfunc model, loaded in a fresh process, predicts what ``graftkit predict`` does;
cv's folds; ``MLFLOW_TRACKING_URI`` honoured. Tiny BERT throughout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import sentiment_frame

import graftkit as gk
from graftkit.cli.main import main
from graftkit.errors import ConfigError
from graftkit.tracking import check_tracker

mlflow = pytest.importorskip("mlflow", reason="MLflow is absent: pip install 'graftkit[mlflow]' to run these tests")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def no_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)


def _run(uri: str, run_id: str):
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    return client, client.get_run(run_id)


def _artifacts(client, run_id) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id)}


def test_fit_logged_and_its_pyfunc_predicts_as_graftkit_predict(tiny_bert_dir, tmp_path, capsys, no_uri):
    data, new = tmp_path / "train.csv", tmp_path / "new.csv"
    sentiment_frame(60).to_csv(data, index=False)
    pd.DataFrame({"text": sentiment_frame(12, seed=4)["text"]}).to_csv(new, index=False)
    output = tmp_path / "runs" / "sentiment"
    assert main(["fit", str(data), "--backbone", str(tiny_bert_dir), "--test-size", "0.25", "--no-cache",
                 "-o", str(output), "--track", "mlflow", "--json"]) == 0
    tracking = json.loads(capsys.readouterr().out)["tracking"]
    assert tracking["tracking_uri"] == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"  # beside the output
    assert (tmp_path / "runs" / "mlartifacts").is_dir()
    client, run = _run(tracking["tracking_uri"], tracking["run_id"])
    assert run.data.params["backbone"] == str(tiny_bert_dir) and run.data.params["strategy"] == "linear-probe"
    assert run.data.params["task"] == "classification" and run.data.params["data_rows"] == "45"
    assert {"train_accuracy", "test_accuracy", "test_macro_f1"} <= set(run.data.metrics)
    evaluation = json.loads((output / "evaluation.json").read_text())
    assert run.data.metrics["test_accuracy"] == pytest.approx(evaluation["metrics"]["accuracy"])
    assert {"manifest.json", "evaluation.json", "report.html"} <= _artifacts(client, tracking["run_id"])

    assert main(["predict", str(output), str(new), "--json"]) == 0
    expected = [row["prediction"] for row in json.loads(capsys.readouterr().out)]
    script = ("import json, sys, mlflow.pyfunc, pandas as pd; "
              "frame = pd.read_csv(sys.argv[2]); "
              "print(json.dumps(mlflow.pyfunc.load_model(sys.argv[1]).predict(frame)['prediction'].tolist()))")
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking["tracking_uri"], "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(gk.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", script, tracking["model_uri"], str(new)], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == expected


def test_per_epoch_history_and_the_tracking_uri_are_honoured(tiny_bert_dir, tmp_path, monkeypatch, capsys):
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # a user's database store keeps MLflow's own artifact default: ./mlruns
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "lora-runs")
    data = tmp_path / "train.csv"
    sentiment_frame(48).to_csv(data, index=False)
    assert main(["fit", str(data), "--backbone", str(tiny_bert_dir), "--strategy", "lora", "--epochs", "3",
                 "--learning-rate", "0.02", "--batch-size", "8", "-o", str(tmp_path / "lora"), "--track", "mlflow",
                 "--json"]) == 0
    tracking = json.loads(capsys.readouterr().out)["tracking"]
    assert tracking["tracking_uri"] == uri and not (tmp_path / "mlflow.db").exists()
    assert os.environ["MLFLOW_TRACKING_URI"] == uri
    client, run = _run(uri, tracking["run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "lora-runs"
    assert [m.step for m in client.get_metric_history(tracking["run_id"], "train_loss")] == [1, 2, 3]
    assert len(client.get_metric_history(tracking["run_id"], "val_accuracy")) == 3
    assert run.data.params["strategy"] == "lora" and run.data.params["strategy_params.epochs"] == "3"
    assert run.info.artifact_uri.startswith(str(tmp_path / "mlruns"))


def test_cv_logs_each_fold(tiny_bert_dir, tmp_path, monkeypatch, capsys, no_uri):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "train.csv"
    sentiment_frame(40).to_csv(data, index=False)
    assert main(["cv", str(data), "--backbone", str(tiny_bert_dir), "--folds", "3", "--track", "mlflow",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    tracking = result["tracking"]
    assert tracking["tracking_uri"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert "MLFLOW_TRACKING_URI" not in os.environ  # MLflow's set_tracking_uri sets it; graftkit puts it back
    client, run = _run(tracking["tracking_uri"], tracking["run_id"])
    history = client.get_metric_history(tracking["run_id"], "fold_accuracy")
    assert [m.step for m in history] == [1, 2, 3]
    assert [m.value for m in history] == pytest.approx(result["summary"]["accuracy"]["values"])
    assert run.data.metrics["accuracy_mean"] == pytest.approx(result["summary"]["accuracy"]["mean"])
    assert run.data.params["folds"] == "3" and "cv.json" in _artifacts(client, tracking["run_id"])


def test_bad_tracker_settings_fail_in_one_line(tmp_path):
    assert check_tracker(None) is None and check_tracker("mlflow") == "mlflow"
    with pytest.raises(ConfigError, match="unknown tracker 'wandb'"):
        check_tracker("wandb")
    with pytest.raises(ConfigError, match="give output="):
        gk.auto(tmp_path / "absent.csv", backbones=["all-MiniLM-L6-v2"], track="mlflow")
