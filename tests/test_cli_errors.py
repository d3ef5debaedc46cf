"""The CLI's documented error cases (README, "When a command cannot run"), walked one by one: each ends with exactly
one `error:` line, no traceback (nothing escapes `main`, nothing is logged with one) and a non-zero exit."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from atlas.core import paths
from tests.conftest import REPO
from tests.faults import free_port


def _truncate(path: Path, size: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:size])


def _hold_grpo_lock(stack) -> None:
    from atlas.core import locks

    stack.enter_context(locks.hold(paths.LOCKS_DIR / "grpo.lock", "`atlas grpo`"))


def _dead_mlflow(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]
    expected: str  # a piece of the one error line; the README's error table shows it too
    trained: bool = False  # run in a copy of the session's tiny project (every stage done) instead of a fresh one
    setup: Callable | None = None  # setup(project root, monkeypatch, exit stack)
    files: dict[str, str] = field(default_factory=dict)


CASES = [
    Case("unknown config key", ["sft", "--set", "sft.max_step=3"], "unknown config key 'sft.max_step'"),
    Case("a --params file that does not exist", ["sft", "--params", "nope.yaml"], "params file not found: nope.yaml"),
    Case("a preset that is a path", ["config", "--preset", "../../../evil"], "unknown preset '../../../evil'"),
    Case("a duplicate key in params.yaml", ["config"], "duplicate key 'grpo'",
         files={"params.yaml": "preset: tiny\ngrpo: {max_steps: 3}\ngrpo: {beta: 0.1}\n"}),
    Case("cuda on a CPU-only torch", ["probe", "--set", "models.device=cuda"], "models.device is 'cuda' but torch"),
    Case("synthetic n beyond the generator", ["ingest", "--set", "data.synthetic.n=9600"],
         "data.synthetic.n=9600 is more than the generator can make"),
    Case("a stage run before probe (grpo)", ["grpo"], "needs data/probe/probes.jsonl (made by `atlas probe`)"),
    Case("a stage run before probe (evaluate)", ["evaluate"], "needs data/probe/probes.jsonl (made by `atlas probe`)"),
    Case("sft before the data exists", ["sft"], "needs data/models/teacher (made by `atlas models`)"),
    Case("gate before evaluate", ["gate"], "reports/eval.json is missing: run the pipeline (`dvc repro`"),
    Case("register before gate", ["register"], "reports/gate.json is missing"),
    Case("results of a run that does not exist", ["results", "--run-id", "deadbeef"],
         "no MLflow run with id 'deadbeef'"),
    Case("a truncated checkpoint in evaluate", ["evaluate", "--set", "evaluation.teachers=[grpo]"],
         "data/checkpoints/grpo: cannot load the model", trained=True,
         setup=lambda root, mp, stack: _truncate(root / paths.GRPO_CHECKPOINT / "model.safetensors", 1000)),
    Case("a truncated probes file", ["grpo"], "not valid JSON (Expecting property name enclosed in double quotes): the "
         "file is damaged or truncated", trained=True,
         setup=lambda root, mp, stack: _truncate(root / paths.PROBES, 3000)),
    Case("an unreachable MLflow server", ["ingest"], "is not reachable",
         setup=lambda root, mp, stack: _dead_mlflow(mp)),
    Case("the same stage already running", ["grpo"], "`atlas grpo` is already running here (pid", trained=True,
         setup=lambda root, mp, stack: _hold_grpo_lock(stack)),
    Case("a RIM input file that does not exist", ["rim", "score", "--input", "nope.jsonl", "--output", "o.jsonl"],
         "nope.jsonl: input file not found"),
    Case("a bad line in a session file", ["rim", "session", "--input", "sessions.jsonl", "--output", "j.jsonl"],
         "sessions.jsonl: line 2: field 'task': Field required",
         files={"sessions.jsonl": '{"task": "2 + 2?", "final_answer": "4"}\n{"final_answer": "3"}\n'}),
    Case("a learning memory that is not a database",
         ["rim", "session", "--input", "sessions.jsonl", "--output", "j.jsonl", "--memory", "memory.sqlite"],
         "not a readable learning memory (file is not a database)",
         files={"sessions.jsonl": '{"task": "2 + 2?", "final_answer": "4"}\n', "memory.sqlite": "not a database"}),
]  # fmt: skip


@pytest.fixture
def where(request, tmp_path, monkeypatch):
    """A copy of the session's tiny project, or a fresh one (the configuration only: no stage has run; the tiny
    project is only built when a case needs it)."""
    root = tmp_path / "project"
    if request.param:
        ignore = shutil.ignore_patterns("mlruns.db", "mlartifacts", "work", "locks")
        shutil.copytree(request.getfixturevalue("tiny")[0], root, ignore=ignore)
    else:
        shutil.copytree(REPO / "configs", root / "configs")
        (root / "data/incoming").mkdir(parents=True)
        (root / "params.yaml").write_text("preset: tiny\n", encoding="utf-8")
    monkeypatch.chdir(root)
    return root


@pytest.mark.parametrize(
    ("case", "where"), [(c, c.trained) for c in CASES], ids=[c.name for c in CASES], indirect=["where"]
)
def test_each_documented_error_is_one_line_without_a_traceback(case, where, monkeypatch, capsys, caplog):
    from contextlib import ExitStack

    from atlas.cli.main import main

    for name, text in case.files.items():
        (where / name).write_text(text, encoding="utf-8")
    with ExitStack() as stack, caplog.at_level(logging.INFO):
        if case.setup is not None:
            case.setup(where, monkeypatch, stack)
        code = main(case.argv)  # an exception escaping here is the traceback a user would see
    out, err = capsys.readouterr()
    assert code != 0
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert case.expected in errors[0], errors[0]
    assert "Traceback" not in out + err
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_the_readme_documents_every_case():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### When a command cannot run") :]
    assert [c.expected for c in CASES if c.expected not in section] == []
