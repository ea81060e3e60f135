"""One place sets the compute threads (issue 17): torch, BLAS (threadpoolctl) and the tokenizers' pool, one per
physical core by default, shared between torchrun's processes; ``--threads`` on the commands that compute."""

from __future__ import annotations

import os

import pytest
import torch
from threadpoolctl import threadpool_info

from graftkit.cli.main import build_parser, main
from graftkit.errors import ConfigError
from graftkit.threads import default_threads, physical_cores, set_threads


@pytest.fixture
def restore_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("RAYON_NUM_THREADS", raising=False)
    yield
    torch.set_num_threads(before)


def test_physical_cores_within_the_cpus_this_process_may_use():
    assert 1 <= physical_cores() <= len(os.sched_getaffinity(0))


def test_set_threads_sets_torch_blas_openmp_and_the_tokenizers(restore_threads):
    import sklearn.ensemble  # noqa: F401  (loads scikit-learn's OpenMP runtime, which HistGradientBoosting uses)

    assert any(pool["user_api"] == "openmp" for pool in threadpool_info())
    assert set_threads(1) == 1
    assert torch.get_num_threads() == 1 and os.environ["RAYON_NUM_THREADS"] == "1"
    assert all(pool["num_threads"] == 1 for pool in threadpool_info() if pool["user_api"] in ("blas", "openmp"))
    assert set_threads() == default_threads() == torch.get_num_threads()


def test_a_users_tokenizer_setting_wins(restore_threads, monkeypatch):
    monkeypatch.setenv("RAYON_NUM_THREADS", "3")
    set_threads(1)
    assert os.environ["RAYON_NUM_THREADS"] == "3"


def test_torchrun_processes_share_the_cores(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(2 * physical_cores()))
    assert default_threads() == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert default_threads() == physical_cores()


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_bad_thread_counts_are_refused(bad):
    with pytest.raises(ConfigError, match="threads must be a whole number >= 1"):
        set_threads(bad)


def test_the_computing_commands_take_threads(capsys):
    parser = build_parser()
    for command in ("fit", "cv", "auto", "rank", "predict", "evaluate"):
        sub = parser._subparsers._group_actions[0].choices[command]
        assert any("--threads" in action.option_strings for action in sub._actions), command
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "data.csv", "-o", "out", "--threads", "0"])
    assert exit_info.value.code == 2 and "--threads" in capsys.readouterr().err


def test_main_sets_the_threads_before_the_command_runs(monkeypatch, tmp_path):
    import graftkit.cli.main as cli

    seen = []
    monkeypatch.setattr(cli, "set_threads", seen.append)
    assert main(["fit", str(tmp_path / "absent.csv"), "-o", str(tmp_path / "m"), "--threads", "2"]) == 2
    assert main(["fit", str(tmp_path / "absent.csv"), "-o", str(tmp_path / "m")]) == 2
    assert seen == [2, None]  # None: the default, one per physical core
