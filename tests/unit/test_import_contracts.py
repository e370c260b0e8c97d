"""The direction of imports (.importlinter) holds, and breaking it fails: the contracts are run on this tree, then
on copies of it with one offending import added."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "codec", "encoders", "assistant")
LINT = Path(sys.executable).with_name("lint-imports")


def lint(tree: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(tree))  # the packages of `tree`, not the installed ones
    return subprocess.run([str(LINT), "--no-logo", "--no-cache"], cwd=tree, env=env, capture_output=True, text=True)


def test_the_tree_keeps_its_contracts():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("module, line, broken", [
    ("core/state.py", "import assistant.engine", "Each layer imports only the layers below it"),  # upward
    ("codec/model.py", "import encoders.sparse", "Each layer imports only the layers below it"),  # between stages
    ("assistant/session.py", "import assistant.synth.speech", "never imports the training code"),
    ("assistant/model/layers.py", "from . import checkpoint", "No import cycles"),
])
def test_an_offending_import_breaks_a_contract(tmp_path, module, line, broken):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("tutti-tiny", "__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path)
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    done = lint(tmp_path)
    assert done.returncode != 0
    report = " ".join(done.stdout.split())
    assert f"{' '.join(broken.split())}" in report and "BROKEN" in report
