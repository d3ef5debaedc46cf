"""The trained teacher as users get it: a registered MLflow pyfunc model (signature, input example, model card),
loaded by version and by alias, served by `mlflow models serve` on 127.0.0.1 and asked a real HTTP request, and
`atlas teach` / `atlas.ops.teach.teach` on one problem and on a file. All at the tiny preset, on the session's tiny
project (its own MLflow store)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atlas.config import load_config
from atlas.core import paths
from atlas.core.errors import InputError
from atlas.core.io import read_jsonl
from atlas.ops import gate as gating
from atlas.ops import registry

NAME = "atlas-teacher"


@pytest.fixture
def registered(in_tiny, tmp_path, monkeypatch):
    """A freshly registered, gated version of the tiny run's GRPO teacher, made the champion, in a copy of the tiny
    project with its own MLflow store (so the session's registry, which other tests check, is left as it was)."""
    import shutil

    from mlflow import MlflowClient

    root = tmp_path / "project"
    shutil.copytree(in_tiny[0], root, ignore=shutil.ignore_patterns("mlruns.db", "mlartifacts", "work"))
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlruns.db'}")
    monkeypatch.setenv("ATLAS_ARTIFACT_ROOT", str(root / "mlartifacts"))
    cfg = load_config(overrides=["gate.promote=true"])  # the tiny preset registers nothing unless asked
    gating.gate(cfg)
    out = registry.register(cfg)
    assert out["outcome"] in ("registered", "reused"), out
    version = registry._version(MlflowClient().get_model_version(NAME, out["version"]))
    registry.promote(NAME, version)
    return root, out["version"]


def _eval_probes():
    from atlas.stages.probe import load_probes

    return list(load_probes("eval").values())


def test_registered_version_is_a_pyfunc_model_that_runs_the_evaluation_protocol(registered):
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    root, version = registered
    probes = _eval_probes()
    frame = pd.DataFrame([{"problem": p.problem, "probe": p.probe, "ground_truth": p.ground_truth} for p in probes])
    student = str(root / paths.MODELS_DIR / "student")
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/{version}", model_config={"student": student})
    assert [c.name for c in model.metadata.get_input_schema().inputs] == ["problem", "probe", "ground_truth"]
    out = model.predict(frame)
    assert len(out) == len(probes)
    # byte for byte what the evaluation stage's code gets from the gated (grpo) teacher on the same probes
    from atlas.stages.evaluate import teacher_guidance
    from atlas.teaching.protocol import extract_teaching

    assert list(out["teacher_output"]) == teacher_guidance(load_config(), paths.GRPO_CHECKPOINT, probes)
    evaluated = {r["id"]: r["teaching"] for r in read_jsonl(paths.EVAL_OUTCOMES) if r["teacher"] == "grpo"}
    assert list(out["guidance"]) == [evaluated[p.id] for p in probes]
    assert list(out["guidance"]) == [extract_teaching(t) for t in out["teacher_output"]]
    assert list(out["silent"]) == [not g for g in out["guidance"]]
    assert out["student_answer"].map(lambda t: isinstance(t, str)).all()
    assert out["taught_answer"].map(lambda t: isinstance(t, str)).all()
    assert out["taught_correct"].map(lambda v: isinstance(v, bool)).all()  # graded: a ground truth was given
    # the model card is the version's description and an artifact of the model
    mv = MlflowClient().get_model_version(NAME, version)
    assert "## Gate: passed" in mv.description and f"models:/{NAME}/{version}" in mv.description
    assert mv.tags["checkpoint_sha256"] in mv.description and '"source": "tiny"' in mv.description  # the student
    from urllib.parse import urlparse

    model_dir = Path(urlparse(mv.source).path)
    assert "## Lineage" in (model_dir / "artifacts" / "model_card.md").read_text()
    assert model.metadata.saved_input_example_info is not None and (model_dir / "input_example.json").exists()
    # and the registry's own download still finds the checkpoint inside the pyfunc model (the gate re-evaluates it)
    got = registry.download(registry.alias_version(NAME, "champion"), root / ".atlas" / "dl-test")
    assert (got / "config.json").exists() and not (got / "MLmodel").exists()


def test_champion_alias_without_a_student_gives_guidance_only(registered):
    import mlflow
    import pandas as pd

    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    out = model.predict(pd.DataFrame([{"problem": "Tom has 3 pens and buys 4 more. How many pens now?"}]))
    assert isinstance(out.loc[0, "teacher_output"], str) and out.loc[0, "student_answer"] is None
    assert out.loc[0, "silent"] == (out.loc[0, "guidance"] == "")


def test_input_rows_name_the_bad_row():
    import pandas as pd

    from atlas.ops.teacher_model import input_rows

    with pytest.raises(InputError, match="no 'problem' column"):
        input_rows(pd.DataFrame([{"question": "x"}]))
    with pytest.raises(InputError, match="input row 2: field 'problem' is empty"):
        input_rows(pd.DataFrame([{"problem": "a"}, {"problem": "  "}]))
    assert input_rows(pd.DataFrame([{"problem": "a", "probe": float("nan")}]))[0]["probe"] is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_models_serve_answers_a_real_request(registered):
    import httpx

    root, _ = registered
    port = _free_port()
    env = {**os.environ, "ATLAS_STUDENT": str(root / paths.MODELS_DIR / "student"), "MLFLOW_DISABLE_TELEMETRY": "true"}
    cmd = [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", f"models:/{NAME}@champion"]
    cmd += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    log = open(root / "serve.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, (root / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        body = {"dataframe_records": [{"problem": "Ann has 5 pens and buys 3 more. How many pens does she have?"}]}
        response = httpx.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=120)
        assert response.status_code == 200, response.text
        (row,) = response.json()["predictions"]
        assert isinstance(row["teacher_output"], str) and isinstance(row["taught_answer"], str)
        assert isinstance(row["student_answer"], str) and row["silent"] == (row["guidance"] == "")
        bad = httpx.post(f"http://127.0.0.1:{port}/invocations", json={"dataframe_records": [{"x": 1}]}, timeout=60)
        assert bad.status_code >= 400 and "problem" in bad.text
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server we started, by its process group id
            proc.wait(timeout=30)
        log.close()


def test_atlas_teach_one_problem_and_a_file(registered, capsys, tmp_path):
    from atlas.cli.main import main

    root, version = registered
    assert main(["teach", "A farmer has 52 trees in 4 equal rows. How many trees are in each row?"]) == 0
    text = capsys.readouterr().out
    assert "guidance:" in text and "student alone:" in text and "with guidance:" in text and "probe:" in text

    problems = tmp_path / "problems.jsonl"
    problems.write_text('{"problem": "Ann has 5 pens and buys 3 more.", "ground_truth": 8, "id": "a"}\n'
                        '{"problem": "Bob has 9 apples and eats 2.", "probe": "I subtract."}\n')  # fmt: skip
    out = tmp_path / "taught.jsonl"
    args = ["teach", "--input", str(problems), "--output", str(out), "--model-uri", f"models:/{NAME}/{version}"]
    assert main([*args, "--json"]) == 0
    rows = read_jsonl(out)
    assert [r.get("id") for r in rows] == ["a", None] and rows[1]["probe"] == "I subtract."
    assert isinstance(rows[0]["taught_correct"], bool) and rows[1]["taught_correct"] is None
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == rows


def test_atlas_teach_errors_are_one_line(in_tiny, capsys, tmp_path):
    from atlas.cli.main import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "ok"}\n{"question": "no problem field"}\n')
    assert main(["teach", "--input", str(bad)]) == 2
    assert f"error: {bad}: line 2: field 'problem' must be a non-empty string" in capsys.readouterr().err
    assert main(["teach", "--input", str(bad), "--probe", "p"]) == 2
    assert "error: --probe goes with one problem" in capsys.readouterr().err
    assert main(["teach", "x", "--model-uri", "models:/no-such-teacher@champion"]) == 2
    assert "error: cannot load models:/no-such-teacher@champion" in capsys.readouterr().err


def test_python_api_teach(registered):
    from atlas.ops.teach import teach

    root, _ = registered
    rows = teach(["Tom has 3 pens and buys 4 more. How many pens now?"], student=root / "data/models/student")
    assert set(rows[0]) >= {"probe", "guidance", "silent", "student_answer", "taught_answer"}
    assert isinstance(rows[0]["silent"], bool) and rows[0]["student_answer"]


# -- the protocol on user rows, with scripted models (what reaches whom) -------------------------------------------


class _Tokenizer:
    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"


class _Scripted:
    """A Generator that records what it was asked and answers from a function of the rendered prompt."""

    def __init__(self, answer):
        self.answer, self.prompts, self.calls, self.tokenizer, self.name = answer, [], 0, _Tokenizer(), "scripted"

    def render(self, prompt):
        return prompt if isinstance(prompt, str) else self.tokenizer.apply_chat_template(prompt)

    def generate(self, prompts, *, max_new_tokens, temperature, num_samples=1, seed=0, desc=None):
        from atlas.llm.generation import Generation

        rendered = [self.render(p) for p in prompts]
        self.prompts += rendered
        self.calls += len(rendered) * num_samples
        return [[Generation(self.answer(r), 3, False)] * num_samples for r in rendered]

    def logprob(self, prompts, targets, desc=None):
        return [-1.0] * len(prompts)

    def count_tokens(self, text):
        return len(text.split())


def test_teach_rows_hint_reaches_the_student_and_silence_costs_nothing():
    from atlas.config import ProtocolSettings
    from atlas.ops.teacher_model import teach_rows

    def teacher_says(prompt):
        return (
            "<thinking>ok</thinking><teaching></teaching>"
            if "Bob" in prompt
            else "<thinking>x</thinking><teaching>Add the two numbers.</teaching>"
        )

    def student_says(prompt):
        return (
            "So 3 + 4 = 7.\n<solution>7</solution>"
            if "Hint: Add" in prompt.rsplit("Problem:", 1)[1]
            else "<solution>1</solution>"
        )

    teacher, student = _Scripted(teacher_says), _Scripted(student_says)
    p = ProtocolSettings(student_temperature=0.0, probe="approach")
    rows = [
        {"problem": "Ann has 3 pens and buys 4 more.", "probe": None, "ground_truth": "7"},
        {"problem": "Bob has 2 apples.", "probe": "I count them.", "ground_truth": None},
    ]
    ann, bob = teach_rows(p, teacher, student, rows)
    assert ann["guidance"] == "Add the two numbers." and not ann["silent"]
    assert ann["student_final"] == "1" and ann["taught_final"] == "7"
    assert ann["student_correct"] is False and ann["taught_correct"] is True and ann["leaked"] is False
    assert bob["silent"] and bob["probe"] == "I count them." and bob["taught_answer"] == bob["student_answer"]
    assert bob["taught_correct"] is None and bob["leaked"] is None
    # the student was asked: 2 baselines, 1 probe (Bob's was given), 1 taught answer (silence reuses the baseline)
    assert student.calls == 4 and sum("Hint:" in q.rsplit("Problem:", 1)[1] for q in student.prompts) == 1
    assert "I count them." in teacher.prompts[1]
    # without a student: the teacher's guidance for the given probe only
    (alone,) = teach_rows(p, teacher, None, rows[:1])
    assert alone["guidance"] == "Add the two numbers." and alone["student_answer"] is None


def test_a_student_behind_an_openai_compatible_endpoint(registered, capsys):
    """`atlas teach --student-url`: the student's probe, answer alone and taught answer all come from the server."""
    from atlas.cli.main import main
    from tests.rim_helpers import FakeJudgeServer, Reply

    def student(request):
        last = request["body"]["messages"][-1]["content"]
        return Reply(text="<solution>7</solution>" if "Hint:" in last else "I would add.\n<solution>1</solution>")

    _, version = registered
    with FakeJudgeServer(kind="openai", default=student) as server:
        argv = ["teach", "Ann has 3 pens and buys 4 more.", "--model-uri", f"models:/{NAME}/{version}", "--json"]
        assert main([*argv, "--student-url", f"{server.url}/v1", "--student-model", "served-student"]) == 0
        row = json.loads(capsys.readouterr().out)
        asked = [r["body"]["model"] for r in server.requests]
    assert asked and set(asked) == {"served-student"}
    assert row["student_final"] == "1" and row["probe"].startswith("I would add")
    assert row["taught_final"] == ("1" if row["silent"] else "7")
    assert len(asked) == 3  # baseline, probe, taught (tiny's student samples at 0.7, so silence asks again too)


def test_a_checkpoint_reached_through_a_symlink_is_logged(in_tiny, tmp_path):
    """DVC can link outputs into the workspace; MLflow refuses a folder reached through a symlink unless resolved."""
    import mlflow

    from atlas.ops.teacher_model import checkpoint_in, log_teacher_model
    from atlas.ops.tracking import experiment_id

    link = tmp_path / "linked-checkpoint"
    link.symlink_to((in_tiny[0] / paths.GRPO_CHECKPOINT).resolve(), target_is_directory=True)
    with mlflow.start_run(experiment_id=experiment_id("atlas")) as run:
        logged = log_teacher_model(NAME, link, {"teacher": "grpo", "preset": "tiny"})
    model_dir = Path(mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/{logged.artifact_path}"))
    assert (checkpoint_in(model_dir) / "model.safetensors").stat().st_size > 1000
