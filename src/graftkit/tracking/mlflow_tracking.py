"""MLflow runs of graftkit work (``--track mlflow``).

A fitted model's run holds: its parameters (backbone, strategy and its settings, task, seed, data rows), the
per-epoch history of trainable strategies as step metrics (``train_loss``, ``val_accuracy``, ...), the final
train / validation / test metrics, ``manifest.json``, ``evaluation.json`` and the HTML report as artifacts, and
the model as an MLflow pyfunc (``mlflow.pyfunc.load_model(uri).predict(df)``, see ``tracking.pyfunc``) carrying
the model directory. ``MLFLOW_TRACKING_URI`` is honoured; without it the store is a local SQLite database ``mlflow.db``
with artifacts in ``mlartifacts/``, beside the output (for ``cv``, which writes no output, in the working
directory).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

from graftkit.errors import ConfigError

logger = logging.getLogger(__name__)

TRACKERS = ("mlflow",)
EXPERIMENT = "graftkit"


def check_tracker(track: str | None) -> str | None:
    """``track`` when it names a tracker that is installed; a ConfigError naming the flag otherwise."""
    if track is None:
        return None
    if track not in TRACKERS:
        raise ConfigError(f"unknown tracker {track!r} (--track / track=); use one of: {', '.join(TRACKERS)}")
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError("--track mlflow needs MLflow: pip install 'graftkit[mlflow]' (or mlflow-skinny)") from None
    return track


def tracking_uri(root: Path) -> str:
    """``$MLFLOW_TRACKING_URI``, else a SQLite store ``mlflow.db`` in ``root`` (MLflow 3 refuses its old file store
    unless told otherwise, and recommends SQLite for local work)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(root).expanduser().resolve() / 'mlflow.db'}"


@contextmanager
def _start(root: Path, run_name: str):
    """An active run in the store ``tracking_uri(root)`` names; MLflow's ``set_tracking_uri`` also sets
    ``$MLFLOW_TRACKING_URI``, which is put back afterwards so a later run in this process still defaults locally."""
    import mlflow

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri(root))
    try:
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
        if not previous and mlflow.get_experiment_by_name(name) is None:
            # artifacts beside the database, not in the working directory (MLflow's default for a database store)
            mlflow.create_experiment(name, artifact_location=(Path(root).expanduser().resolve() / "mlartifacts").as_uri())
        mlflow.set_experiment(name)
        with mlflow.start_run(run_name=run_name) as run:
            yield run
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous


def _numbers(values: dict, prefix: str = "") -> dict[str, float]:
    """The finite numbers of a (nested) dict as flat ``prefix_key`` metrics."""
    out = {}
    for key, value in (values or {}).items():
        name = f"{prefix}{key}".replace("/", "_")
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[name] = float(value)
        elif isinstance(value, dict):
            out.update(_numbers(value, f"{name}_"))
    return out


def _params(values: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for key, value in (values or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_params(value, f"{name}."))
        elif value is not None:
            out[name] = str(value)[:500]
    return out


def model_params(manifest: dict) -> dict[str, str]:
    backbone = manifest["backbone"]
    return _params({"backbone": backbone["source"]["spec"], "backbone_settings": backbone.get("settings", {}),
                    "strategy": manifest["strategy"].get("name"),
                    "strategy_params": {k: v for k, v in manifest["strategy"].items() if k != "name"},
                    "task": manifest["task"].get("kind"), "seed": manifest.get("seed"),
                    "batch_size": manifest["hyperparameters"].get("batch_size"),
                    "data_rows": manifest["data"].get("rows"), "data_source": manifest["data"].get("source")})


def log_model_run(model_dir, *, params: dict | None = None, artifacts: list | None = None,
                  run_name: str | None = None) -> dict:
    """One MLflow run for the saved model in ``model_dir``; returns ``{"run_id", "model_uri", "tracking_uri"}``."""
    import mlflow

    from graftkit.artifacts import read_manifest
    from graftkit.report import write_report
    from graftkit.tracking.pyfunc import GraftkitModel

    model_dir = Path(model_dir).expanduser().resolve()
    manifest = read_manifest(model_dir)
    with _start(model_dir.parent, run_name or model_dir.name) as run:
        mlflow.log_params({**model_params(manifest), **_params(params or {}, "run.")})
        for i, row in enumerate((manifest.get("training") or {}).get("history") or []):
            step = int(row.get("epoch", i + 1))
            mlflow.log_metrics({k: v for k, v in _numbers(row).items() if k != "epoch"}, step=step)
        mlflow.log_metrics(_numbers(manifest.get("metrics", {})))
        mlflow.log_artifact(str(model_dir / "manifest.json"))
        if (model_dir / "evaluation.json").is_file():
            mlflow.log_artifact(str(model_dir / "evaluation.json"))
            with tempfile.TemporaryDirectory() as tmp:
                mlflow.log_artifact(str(write_report(model_dir, Path(tmp) / "report.html")))
        for extra in artifacts or []:
            if Path(extra).is_file():
                mlflow.log_artifact(str(extra))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MLflow's notes on signatures and the file store
            info = mlflow.pyfunc.log_model(name="model", python_model=GraftkitModel(),
                                           artifacts={"model_dir": str(model_dir)},
                                           pip_requirements=[_requirement()])
        logged = {"run_id": run.info.run_id, "model_uri": info.model_uri,
                  "tracking_uri": mlflow.get_tracking_uri()}
    logger.info("MLflow run %s logged to %s (model: %s)", logged["run_id"], logged["tracking_uri"], logged["model_uri"])
    return logged


def _requirement() -> str:
    """The pip requirement of the pyfunc's environment (the installed graftkit; read from package metadata, as
    importing ``graftkit`` itself would reach above this layer)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"graftkit=={version('graftkit')}"
    except PackageNotFoundError:
        return "graftkit"


def log_cv(result: dict, *, params: dict, root=".", run_name: str = "cv") -> dict:
    """One MLflow run for a cross-validation: parameters, each fold's metrics as a step, mean and std."""
    import mlflow

    with _start(Path(root), run_name) as run:
        mlflow.log_params(_params(params))
        for name, summary in result.get("summary", {}).items():
            for fold, value in enumerate(summary.get("values", []), start=1):
                if isinstance(value, (int, float)) and math.isfinite(value):
                    mlflow.log_metric(f"fold_{name}", float(value), step=fold)
            mlflow.log_metrics(_numbers({f"{name}_mean": summary.get("mean"), f"{name}_std": summary.get("std")}))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "cv.json"
            path.write_text(json.dumps(result, indent=2, default=str))
            mlflow.log_artifact(str(path))
        logged = {"run_id": run.info.run_id, "tracking_uri": mlflow.get_tracking_uri()}
    logger.info("MLflow run %s logged to %s", logged["run_id"], logged["tracking_uri"])
    return logged
