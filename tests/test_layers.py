"""The layers of ARCHITECTURE.md hold: no module imports a layer above its own (import-linter's contract in
pyproject.toml), and nothing outside ``tasks/`` branches on the kind of task."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "graftkit"
TASK_KINDS = ("classification", "multilabel-classification", "regression")


def test_no_layer_imports_a_layer_above_it():
    command = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(command).exists():
        pytest.fail("lint-imports (import-linter) is not installed; pip install -e '.[test]'")
    result = subprocess.run([command, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Contracts: 1 kept, 0 broken." in result.stdout


def test_nothing_outside_tasks_branches_on_the_task_kind():
    pattern = re.compile(r"""(kind\s*[!=]=|==\s*|in\s*\(|\{)\s*["'](%s)["']""" % "|".join(TASK_KINDS))
    offenders = []
    for path in SOURCE.rglob("*.py"):
        if path.is_relative_to(SOURCE / "tasks"):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "ask the task instead of testing its kind:\n" + "\n".join(offenders)
