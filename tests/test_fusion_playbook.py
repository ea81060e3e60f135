"""Multi-input tables through the rest of graftkit (issue 12 item 6): `cv` routes to the fusion model's folds,
`rank` scores backbones on the fused features, `auto` climbs the fusion playbook (tabular GBDT -> TF-IDF baseline ->
frozen fusion, GBDT and linear heads -> two-stage LoRA when it fits) and saves a loadable fusion model, `report`
renders a fusion directory with its feature-group importance. Tiny BERT, synthetic tables."""

from __future__ import annotations

import json

import numpy as np
import pytest

from graftkit.cli.main import main
from test_fusion import FAST, ROLES, table_frame

ROLE_FLAGS = ["--text", "title", "review", "--numeric", "age", "--categorical", "dept"]


@pytest.fixture(autouse=True)
def one_openmp_thread(one_thread):
    """The trees' OpenMP pool at one thread too: on two shared, busy cores a spinning second thread costs ten-fold."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture
def table_csv(tmp_path):
    path = tmp_path / "t.csv"
    table_frame(80).to_csv(path, index=False)
    return path


def test_cli_cv_on_a_multi_input_table_runs_the_fusion_folds(tiny_bert_dir, table_csv, capsys):
    code = main(["cv", str(table_csv), "--label", "label", *ROLE_FLAGS, "--backbone", str(tiny_bert_dir),
                 "--folds", "2", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["task"] == "classification" and len(result["folds"]) == 2
    assert result["summary"]["accuracy"]["mean"] > 0.6
    assert sum(f["n_test"] for f in result["folds"]) == 80


def test_cli_cv_refuses_a_strategy_fusion_has_not(tiny_bert_dir, table_csv, capsys):
    code = main(["cv", str(table_csv), "--label", "label", *ROLE_FLAGS, "--backbone", str(tiny_bert_dir),
                 "--strategy", "finetune"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--strategy linear-probe" in err[0] and "got --strategy finetune" in err[0]
