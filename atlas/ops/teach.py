"""Use a trained teacher: `teach(problems)` loads a registered `atlas-teacher` (the champion by default) as the MLflow
pyfunc model that `register` logged, and returns its guidance and the student's answers with and without it.

This is what `atlas teach` calls, and the Python API the README shows:

    from atlas.ops.teach import teach
    rows = teach(["A farmer has 52 trees in 4 equal rows. How many trees are in each row?"],
                 student="data/models/student")

The student is a local model folder, an OpenAI-compatible endpoint (`{"base_url": ..., "model": ...}`) or None
(then the environment's `ATLAS_STUDENT`/`ATLAS_STUDENT_BASE_URL`, else guidance only).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from atlas.core.errors import AtlasError, InputError
from atlas.ops import tracking

log = logging.getLogger(__name__)

DEFAULT_MODEL = "atlas-teacher"


def champion_uri(name: str = DEFAULT_MODEL) -> str:
    return f"models:/{name}@champion"


def student_config(student: str | Path | Mapping[str, Any] | None) -> dict[str, Any]:
    """The model_config keys that name the student: a folder, an endpoint mapping (base_url, model, api_key_env,
    tokenizer), "none" (guidance only, whatever the environment says), or None (the environment decides)."""
    if student is None:
        return {}
    if isinstance(student, Mapping):
        unknown = sorted(set(student) - {"base_url", "model", "api_key_env", "tokenizer"})
        if unknown or not student.get("base_url"):
            raise AtlasError(
                "student endpoint needs base_url (and optionally model, api_key_env, tokenizer); "
                f"got {', '.join(unknown) or 'no base_url'}"
            )
        return {f"student_{k}": str(v) for k, v in student.items() if v is not None}
    text = str(student)
    return {"student": text if text.lower() == "none" else str(Path(text).resolve())}


def load(model_uri: str | None = None, student: str | Path | Mapping[str, Any] | None = None):
    """The registered teacher as a pyfunc model, with the student configured."""
    from mlflow.exceptions import MlflowException

    mlflow = tracking.get_mlflow()
    uri = model_uri or champion_uri()
    try:
        return mlflow.pyfunc.load_model(uri, model_config=student_config(student))
    except MlflowException as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        hint = " (no run has promoted a champion yet: run the pipeline, or pass --model-uri models:/<name>/<version>)"
        raise AtlasError(
            f"cannot load {uri} from {tracking.tracking_uri()}: {first}{hint if '@' in uri else ''}"
        ) from None


def teach(
    problems: str | Iterable[str | Mapping[str, Any]],
    model_uri: str | None = None,
    student: str | Path | Mapping[str, Any] | None = None,
    model=None,
) -> list[dict[str, Any]]:
    """Guidance (and, with a student, the answers alone and taught) for each problem: a string, or rows with
    `problem` and optionally `probe` and `ground_truth`. `model` reuses a model from `load`."""
    import pandas as pd

    rows = [_row(problems)] if isinstance(problems, str) else [_row(p) for p in problems]
    if not rows:
        return []
    model = model or load(model_uri, student)
    given = [c for c in ("problem", "probe", "ground_truth") if any(r[c] is not None for r in rows)]
    frame = pd.DataFrame([{c: r[c] for c in given} for r in rows], columns=given)
    out = model.predict(frame)
    return [{k: _plain(v) for k, v in row.items()} for row in out.to_dict("records")]


def _row(item: str | Mapping[str, Any]) -> dict[str, Any]:
    """The model's input columns of one problem, as strings (a number as ground truth is fine)."""
    item = {"problem": item} if isinstance(item, str) else item
    return {k: None if item.get(k) is None else str(item[k]) for k in ("problem", "probe", "ground_truth")}


def _plain(value: Any) -> Any:
    """numpy/pandas scalars and NaN as plain JSON values."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value.item() if hasattr(value, "item") else value


def read_problems(path: Path) -> list[dict[str, Any]]:
    """A jsonl file of problems: each line an object with a non-empty string `problem` (optional `probe`,
    `ground_truth`, and any other fields, which are kept in the output)."""
    import json

    rows = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}: line {number}: expected a JSON object")
        if not isinstance(row.get("problem"), str) or not row["problem"].strip():
            raise InputError(f"{path}: line {number}: field 'problem' must be a non-empty string")
        for key in ("probe", "ground_truth"):
            if row.get(key) is not None and not isinstance(row[key], str | int | float):
                raise InputError(f"{path}: line {number}: field '{key}' must be a string")
        rows.append(row)
    if not rows:
        raise InputError(f"{path}: no problems")
    return rows
