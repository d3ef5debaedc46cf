"""Where every stage reads and writes, relative to the project root (the directory DVC runs stages from).

One place for the layout, so `dvc.yaml`, the stages and the tests agree.
"""

from __future__ import annotations

from pathlib import Path

PARAMS = Path("params.yaml")
PRESETS_DIR = Path("configs/presets")

CONFIG_DIR = Path("data/config")
MODELS_DIR = Path("data/models")
INTERIM_DIR = Path("data/interim")
RECORDS = INTERIM_DIR / "records.jsonl"
PROCESSED_DIR = Path("data/processed")
TRAIN = PROCESSED_DIR / "train.jsonl"
DEV = PROCESSED_DIR / "dev.jsonl"
EVAL = PROCESSED_DIR / "eval.jsonl"
SFT_DATA = PROCESSED_DIR / "sft.jsonl"
PROBE_DIR = Path("data/probe")
PROBES = PROBE_DIR / "probes.jsonl"
CHECKPOINTS_DIR = Path("data/checkpoints")
SFT_CHECKPOINT = CHECKPOINTS_DIR / "sft"
GRPO_CHECKPOINT = CHECKPOINTS_DIR / "grpo"
RULE_CHECKPOINT = CHECKPOINTS_DIR / "rule"
GRPO_WORK = Path("data/work/grpo")
# The checkpoint each trained teacher is evaluated, gated and registered from.
TEACHER_CHECKPOINTS = {"sft": SFT_CHECKPOINT, "grpo": GRPO_CHECKPOINT, "rule": RULE_CHECKPOINT}
REPORTS_DIR = Path("reports")
VALIDATION_REPORT = REPORTS_DIR / "validation.json"
QUARANTINE = REPORTS_DIR / "quarantine.jsonl"
# The dataset card lives with the data it describes, so validate swaps both in as one folder.
DATASET_CARD = PROCESSED_DIR / "dataset_card.json"
PROBE_METRICS = REPORTS_DIR / "probe.json"
SFT_METRICS = REPORTS_DIR / "sft.json"
RULE_METRICS = REPORTS_DIR / "rule.json"
GRPO_METRICS = REPORTS_DIR / "grpo.json"
EVAL_METRICS = REPORTS_DIR / "eval.json"
EVAL_OUTCOMES = REPORTS_DIR / "eval_outcomes.jsonl"
EVAL_SUMMARY = REPORTS_DIR / "eval_summary.md"
DEV_REPORTS_DIR = REPORTS_DIR / "dev"  # `atlas evaluate --split dev`: same files, for design decisions
GATE_REPORT = REPORTS_DIR / "gate.json"
# What `dvc metrics show` prints (one screen): the evaluation's headline and the gate's verdict; every stage report
# above stays a DVC output, shown in full with `dvc metrics show <path>`.
HEADLINE_METRICS = REPORTS_DIR / "headline.json"
GATE_VERDICT = REPORTS_DIR / "gate_verdict.json"
# Data plots for `dvc plots show|diff` (JSON lists of records; dvc.yaml's top-level `plots:` says how to draw them).
PLOTS_DIR = REPORTS_DIR / "plots"
GRPO_CURVE = PLOTS_DIR / "grpo_curve.json"
TEACHERS_PLOT = PLOTS_DIR / "teachers.json"
KINDS_PLOT = PLOTS_DIR / "accuracy_by_kind.json"
STATE_DIR = Path(".atlas")
SFT_WORK = Path("data/work/sft")
RULE_WORK = Path("data/work/rule")
LOCKS_DIR = STATE_DIR / "locks"
INCOMING_REJECTED = "rejected"  # a folder inside data.incoming_dir: rejected drops and their reports (.dvcignore'd)

# Which stage writes each pipeline file or folder: a missing input names the command that makes it.
PRODUCED_BY: dict[Path, str] = {
    CONFIG_DIR: "config",
    MODELS_DIR: "models",
    RECORDS: "ingest",
    PROCESSED_DIR: "validate",
    PROBE_DIR: "probe",
    SFT_CHECKPOINT: "sft",
    SFT_METRICS: "sft",
    RULE_CHECKPOINT: "rule",
    RULE_METRICS: "rule",
    GRPO_CHECKPOINT: "grpo",
    GRPO_METRICS: "grpo",
    GRPO_CURVE: "grpo",
    EVAL_METRICS: "evaluate",
    HEADLINE_METRICS: "evaluate",
    TEACHERS_PLOT: "evaluate",
    KINDS_PLOT: "evaluate",
    EVAL_OUTCOMES: "evaluate",
    GATE_REPORT: "gate",
    GATE_VERDICT: "gate",
}


def made_by(path: Path | str) -> str | None:
    """The stage that writes `path` (or the folder it lives in), if it is a pipeline file."""
    path = Path(path)
    for candidate in (path, *path.parents):
        if candidate in PRODUCED_BY:
            return PRODUCED_BY[candidate]
    return None


def missing_hint(path: Path | str) -> str:
    """`: run `atlas <stage>` (or `dvc repro <stage>`) first` for a pipeline file, else ''."""
    stage = made_by(path)
    if stage is None:
        return ""
    if stage == "gate":
        return ": run `atlas gate` first"
    return f": run `atlas {stage}` (or `dvc repro {stage}`) first"
