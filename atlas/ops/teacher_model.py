"""The trained teacher as an MLflow pyfunc model: what `register` logs as each `atlas-teacher` version.

`TeacherModel` is a custom `mlflow.pyfunc.PythonModel` around the teacher checkpoint (its only artifact besides the
model card). Its `predict` takes a DataFrame with a `problem` column (optional: `probe`, the student's stated approach
or attempt; `ground_truth`, to grade the answers) and runs the two-pass protocol of `atlas.teaching.protocol`:

- with a student configured: the student's answer alone and its probe (`probe_records`, unless a probe is given),
  then the teacher's guidance and the student's answer under it (`teach`): the code evaluation runs;
- without a student: the teacher's guidance for the given probes only.

The student is named by configuration, never baked in: the `model_config` of `mlflow.pyfunc.load_model(uri,
model_config={"student": "<folder>"})` or, for `mlflow models serve`, the environment (`ATLAS_STUDENT`,
`ATLAS_STUDENT_BASE_URL`, ...; see `STUDENT_KEYS`). The protocol settings logged with the model are the ones the
teacher was trained and evaluated under (`data/config/protocol.json` of the run). The model card
(`model_card.md`, also the version's description) holds the gate's checks, the held-out metrics, the lineage tags and
how to call the model. This module imports mlflow at module level: import it only where a model is logged or loaded.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd  # loaded by mlflow already; the predict type hint (MLflow reads it)

from atlas.config import ModelSpec, ProtocolSettings
from atlas.core import paths
from atlas.core.errors import AtlasError, InputError
from atlas.core.io import read_json

log = logging.getLogger(__name__)

MODEL_PATH = "teacher_model"  # artifact path of the pyfunc model inside the register run
TEACHER_ARTIFACT = "teacher"
CARD_ARTIFACT = "model_card"
INPUT_COLUMNS = {"problem": True, "probe": False, "ground_truth": False}  # name -> required
OUTPUT_COLUMNS = {
    "problem": "string",
    "probe": "string",  # what the teacher saw: the given probe, or the student's own
    "teacher_output": "string",  # the full completion, <thinking> included
    "guidance": "string",  # the <teaching> text, the only part that reaches the student
    "silent": "boolean",  # the teacher chose to leave the student alone (empty guidance)
    "student_answer": "string",  # the student alone
    "student_final": "string",
    "taught_answer": "string",  # the student with the guidance
    "taught_final": "string",
    "leaked": "boolean",  # with a ground truth: the guidance states the answer
    "student_correct": "boolean",
    "taught_correct": "boolean",
}
# model_config key -> environment variable read when the key is not set (how `mlflow models serve` is configured)
STUDENT_KEYS = {
    "student": "ATLAS_STUDENT",  # a local model folder (e.g. the pipeline's data/models/student), or "none"
    "student_base_url": "ATLAS_STUDENT_BASE_URL",  # an OpenAI-compatible server (vLLM, llama.cpp, ...)
    "student_model": "ATLAS_STUDENT_MODEL",
    "student_api_key_env": "ATLAS_STUDENT_API_KEY_ENV",  # the NAME of the variable holding the key
    "student_tokenizer": "ATLAS_STUDENT_TOKENIZER",  # a folder with the served student's tokenizer (optional)
    "student_dtype": "ATLAS_STUDENT_DTYPE",
}
EXAMPLE_PROBLEM = "A farmer has 52 trees in 4 equal rows. How many trees are in each row?"


def _setting(config: Mapping[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value in (None, ""):
        value = os.environ.get(STUDENT_KEYS[key]) or None
    return None if value is None else str(value)


def load_configured_student(config: Mapping[str, Any], device: str = "cpu", batch_size: int = 16):
    """The student named by `config` (or the environment): an `OpenAIGenerator` for `student_base_url`, an
    `HFGenerator` for a `student` folder, or None (guidance only)."""
    from atlas.llm.generation import HFGenerator
    from atlas.llm.models import load_tokenizer

    url, folder = _setting(config, "student_base_url"), _setting(config, "student")
    if url:
        from atlas.llm.openai_generator import OpenAIGenerator

        tokenizer_dir = _setting(config, "student_tokenizer")
        return OpenAIGenerator(
            url,
            _setting(config, "student_model") or "student",
            api_key_env=_setting(config, "student_api_key_env"),
            tokenizer=load_tokenizer(tokenizer_dir) if tokenizer_dir else None,
        )
    if folder is None or folder.lower() == "none":
        return None
    if not Path(folder).is_dir():
        raise AtlasError(f"student folder {folder} does not exist (set model_config 'student' or ATLAS_STUDENT)")
    spec = ModelSpec(source=folder, dtype=_setting(config, "student_dtype") or "float32")
    return HFGenerator.from_path(Path(folder), spec, device, batch_size, name="student")


def input_rows(frame) -> list[dict[str, str | None]]:
    """The model's input as rows {problem, probe, ground_truth}; a row without a problem is an error naming it."""
    if "problem" not in frame.columns:
        raise InputError(f"input has no 'problem' column (columns: {', '.join(map(str, frame.columns)) or 'none'})")
    rows = []
    for number, record in enumerate(frame.to_dict("records"), start=1):
        row = {name: _text(record.get(name)) for name in INPUT_COLUMNS}
        if not row["problem"]:
            raise InputError(f"input row {number}: field 'problem' is empty")
        rows.append(row)
    return rows


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):  # None or NaN: not given
        return None
    return str(value).strip() or None


def teach_rows(p: ProtocolSettings, teacher, student, rows: Sequence[Mapping[str, str | None]]) -> list[dict]:
    """The two-pass protocol on user rows (the protocol code evaluation runs); one output row per input row."""
    from atlas.teaching.answers import extract_answer
    from atlas.teaching.protocol import (
        extract_teaching,
        grade,
        guidance_leaks,
        probe_records,
        teach,
        teacher_completions,
    )

    problems = [r["problem"] for r in rows]
    if student is None:
        probes = [r.get("probe") or "" for r in rows]
        completions = teacher_completions(p, teacher, problems, probes)
        teachings, records, answers = [extract_teaching(c) for c in completions], [None] * len(rows), [None] * len(rows)
    else:
        records = probe_records(p.model_copy(update={"baseline_k": 1}), student, rows, [r.get("probe") for r in rows])
        taught = teach(p, teacher, student, records, k=1, seed=p.seed + 1, label="teacher", score=False)
        completions, teachings, answers = taught.completions, taught.teachings, [s[0] for s in taught.samples]
        probes = [r.probe for r in records]
    out = []
    for row, probe, completion, teaching, record, answer in zip(
        rows, probes, completions, teachings, records, answers, strict=True
    ):
        truth = row.get("ground_truth")
        alone = record.first_attempt if record else None
        out.append(
            {
                "problem": row["problem"],
                "probe": probe,
                "teacher_output": completion,
                "guidance": teaching,
                "silent": not teaching,
                "student_answer": alone.text if alone else None,
                "student_final": extract_answer(alone.text) if alone else None,
                "taught_answer": answer.text if answer else None,
                "taught_final": extract_answer(answer.text) if answer else None,
                "leaked": guidance_leaks(teaching, truth, row["problem"]) if truth else None,
                "student_correct": alone.correct if alone and truth else None,
                "taught_correct": grade(answer.text, truth, answer.truncated)[0] if answer and truth else None,
            }
        )
    return out


class TeacherModel(mlflow.pyfunc.PythonModel):
    """The teacher checkpoint and the two-pass protocol, as MLflow loads and serves it (see the module docstring)."""

    def load_context(self, context) -> None:
        from atlas.llm.generation import HFGenerator
        from atlas.llm.models import resolve_device, setup_torch

        config = dict(context.model_config or {})
        self.protocol = ProtocolSettings(**config["protocol"])
        device = resolve_device(config.get("device", "cpu"))
        setup_torch(int(config.get("num_threads", 2)), self.protocol.seed)
        teacher_dir = Path(context.artifacts[TEACHER_ARTIFACT])
        spec = ModelSpec(**config["teacher"])
        self.teacher = HFGenerator.from_path(teacher_dir, spec, device, self.protocol.batch_size, name="teacher")
        self.student = load_configured_student(config, device, self.protocol.batch_size)
        log.info("teacher loaded from %s; student: %s", teacher_dir, _student_name(self.student))

    def predict(self, context, model_input: pd.DataFrame, params=None):  # a DataFrame hint: no per-row hints
        rows = input_rows(model_input)
        return pd.DataFrame(teach_rows(self.protocol, self.teacher, self.student, rows), columns=list(OUTPUT_COLUMNS))


def _student_name(student) -> str:
    if student is None:
        return "none (guidance only)"
    return getattr(student, "base_url", None) or getattr(student, "name", "student")


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec("string", name, required=required) for name, required in INPUT_COLUMNS.items()])
    outputs = Schema([ColSpec(kind, name, required=False) for name, kind in OUTPUT_COLUMNS.items()])
    return ModelSignature(inputs=inputs, outputs=outputs)


def pipeline_model_config(config_dir: Path = paths.CONFIG_DIR) -> dict[str, Any]:
    """The settings the teacher was trained and evaluated under (the run's section files), as the model's config."""
    protocol = read_json(config_dir / "protocol.json")["protocol"]  # missing: an InputError naming `atlas config`
    models = read_json(config_dir / "models.json")["models"]
    settings = {"protocol": protocol, "teacher": models["teacher"], "device": models["device"]}
    settings["num_threads"] = models["num_threads"]
    settings["trained_for_student"] = models["student"]  # what it was trained and evaluated with (a record only)
    # a local student runs in the precision the teacher was evaluated with (precision flips answers)
    return {**settings, **dict.fromkeys(STUDENT_KEYS), "student_dtype": models["student"]["dtype"]}


def requirements() -> list[str]:
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in ("mlflow", "torch", "transformers", "pandas")]
    return [*pins, f"atlas-pipeline=={importlib.metadata.version('atlas-pipeline')}"]


@dataclass(frozen=True)
class LoggedTeacher:
    artifact_path: str  # relative to the run's artifact root
    card: str  # the model card, with `<version>` where the version number goes

    def describe(self, client, version) -> None:
        """Put the model card on the registered version (the registry UI shows it as the description)."""
        client.update_model_version(
            version.name, version.version, description=self.card.replace("<version>", str(version.version))
        )


def log_teacher_model(name: str, checkpoint: Path, tags: Mapping[str, str]) -> LoggedTeacher:
    """Log `checkpoint` as a `TeacherModel` pyfunc (signature, input example, model card) into the active run."""
    import pandas as pd

    config = pipeline_model_config()
    card = model_card(name, tags, config)
    example = pd.DataFrame([{"problem": EXAMPLE_PROBLEM, "probe": "I will add 52 and 4."}])
    with tempfile.TemporaryDirectory(prefix="atlas-teacher-") as tmp:
        card_path = Path(tmp) / "model_card.md"
        card_path.write_text(card, encoding="utf-8")
        model_dir = Path(tmp) / MODEL_PATH
        mlflow.pyfunc.save_model(
            path=str(model_dir),
            python_model=TeacherModel(),
            # resolved: MLflow refuses a folder reached through a symlink (a DVC-linked checkpoint can be one)
            artifacts={TEACHER_ARTIFACT: str(Path(checkpoint).resolve()), CARD_ARTIFACT: str(card_path)},
            signature=signature(),
            input_example=example,
            model_config=config,
            pip_requirements=requirements(),
            metadata={"atlas.teacher": tags.get("teacher", ""), "atlas.preset": tags.get("preset", "")},
        )
        mlflow.log_artifacts(str(model_dir), artifact_path=MODEL_PATH)
    return LoggedTeacher(MODEL_PATH, card)


def checkpoint_in(model_dir: Path) -> Path:
    """The teacher checkpoint inside a downloaded pyfunc model folder (where its MLmodel file says it is)."""
    import yaml

    flavor = yaml.safe_load((Path(model_dir) / "MLmodel").read_text(encoding="utf-8"))["flavors"]["python_function"]
    return Path(model_dir) / flavor["artifacts"][TEACHER_ARTIFACT]["path"]


def model_card(name: str, tags: Mapping[str, str], config: Mapping[str, Any]) -> str:
    """Markdown: what the version is, the gate's checks, held-out metrics, lineage, how to call it."""
    gate = read_json(paths.GATE_REPORT) if paths.GATE_REPORT.exists() else {}
    teacher = tags.get("teacher", "?")
    evaluation = read_json(paths.EVAL_METRICS) if paths.EVAL_METRICS.exists() else {}
    overall = evaluation.get("teachers", {}).get(teacher, {}).get("overall", {})
    lines = [
        f"# {name} version <version>: the {teacher} teacher of a `{tags.get('preset', '?')}` run",
        "",
        "An ATLAS teacher: it reads a problem and the student's probe and writes `<thinking>` + `<teaching>`;",
        "only the teaching reaches the student, and an empty one means it leaves the student alone.",
        "",
        f"## Gate: {'passed' if gate.get('passed') else 'FAILED'}",
        "",
        "| check | value | threshold | passed |",
        "|:---|---:|---:|:---:|",
    ]
    for c in gate.get("checks", []):
        lines.append(f"| {c['name']} {c['comparison']} | {_num(c['value'])} | {_num(c['threshold'])} | {c['passed']} |")
    lines += ["", "## Held-out evaluation (this teacher, same protocol as training)", ""]
    for key in ("baseline_accuracy", "taught_accuracy", "accuracy_delta", "accuracy_delta_ci_low",
                "accuracy_delta_ci_high", "non_degradation_rate", "leak_rate", "n_problems", "k"):  # fmt: skip
        if key in overall:
            lines.append(f"- {key}: {_num(overall[key])}")
    lines += ["", "## Lineage", ""]
    for key in sorted(tags):
        if key != "config":
            lines.append(f"- {key}: `{tags[key]}`")
    lines += [
        f"- protocol: `{json.dumps(config['protocol'], sort_keys=True)}`",
        f"- trained and evaluated with the student: `{json.dumps(config.get('trained_for_student'), sort_keys=True)}`",
        "",
        "## How to call it",
        "",
        "```python",
        "import mlflow, pandas as pd",
        f'model = mlflow.pyfunc.load_model("models:/{name}/<version>",',
        '                               model_config={"student": "data/models/student"})',
        f'model.predict(pd.DataFrame([{{"problem": "{EXAMPLE_PROBLEM}"}}]))',
        "```",
        "",
        "Input columns: `problem` (required), `probe` (the student's approach or attempt), `ground_truth` (grades the",
        f"answers). Output columns: {', '.join(f'`{c}`' for c in OUTPUT_COLUMNS)}. Without a student (`model_config`",
        "`student`/`student_base_url`, or `ATLAS_STUDENT`/`ATLAS_STUDENT_BASE_URL` when served) only the guidance is",
        "returned.",
        "",
        f"Serve: `ATLAS_STUDENT=data/models/student mlflow models serve -m models:/{name}/<version> --env-manager local"
        ' -h 127.0.0.1 -p 5001`, then POST `{"dataframe_records": [{"problem": "..."}]}` to /invocations.',
        f'From the project: `atlas teach "..." --model-uri models:/{name}/<version>`.',
    ]
    return "\n".join(lines)[:4900] + "\n"


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "n/a" if value is None else str(value)
