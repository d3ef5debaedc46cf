"""Stage `evaluate`: non-degradation evaluation of the teachers on the held-out split, through the protocol code.

For each evaluation problem: the cached baseline samples and probe (probe stage), the teacher's guidance (greedy:
the deployment setting) from the exact teacher prompt GRPO trained on, and `k` taught student samples. The teacher
`none` gets `k` fresh unguided samples instead, so its non-degradation rate is the sampling noise floor (with a
greedy student, unguided answers are the cached baseline answers and the floor is exactly 100%). RIM judges every
interaction when `evaluation.rim` is on. Writes reports/eval.json, the per-problem outcomes, the summary and plots;
metric definitions live in `atlas.teaching.metrics` and docs/metrics.md.
"""

from __future__ import annotations

import logging
from pathlib import Path

from atlas.config import AtlasConfig
from atlas.core import paths
from atlas.core.io import write_json, write_jsonl
from atlas.core.progress import Progress
from atlas.stages.probe import load_probes
from atlas.teaching.protocol import grade, guidance_leaks, teach, teacher_completions
from atlas.teaching.records import ProbeRecord

log = logging.getLogger(__name__)


def load_teacher(cfg: AtlasConfig, teacher_dir: Path):
    """The teacher checkpoint as a generator, in the configuration's dtype and device."""
    from atlas.llm.generation import HFGenerator
    from atlas.llm.models import resolve_device

    device = resolve_device(cfg.models.device)
    return HFGenerator.from_path(
        teacher_dir, cfg.models.teacher, device, cfg.protocol.batch_size, name=teacher_dir.name
    )


def teacher_guidance(cfg: AtlasConfig, teacher_dir: Path, probes: list[ProbeRecord]) -> list[str]:
    """The teacher's full completions for each problem (greedy), from the rendered teacher prompt."""
    teacher = load_teacher(cfg, teacher_dir)
    return teacher_completions(cfg.protocol, teacher, [p.problem for p in probes], [p.probe for p in probes])


def evaluate_teacher(
    cfg: AtlasConfig, student, name: str, teacher_dir: Path | None, probes: list[ProbeRecord]
) -> list[dict]:
    """Outcome rows (one per problem) for one teacher; `teacher_dir=None` is the student alone."""
    teacher = None if teacher_dir is None else load_teacher(cfg, teacher_dir)
    taught = teach(cfg.protocol, teacher, student, probes, cfg.evaluation.k, seed=cfg.evaluation.seed + 1, label=name)
    teachings, samples, logps = taught.teachings, taught.samples, taught.logps
    rows = []
    for pr, teaching, outs, logp in zip(probes, teachings, samples, logps, strict=True):
        graded = [grade(o.text, pr.ground_truth, o.truncated) for o in outs]
        rows.append(
            {
                "teacher": name,
                "id": pr.id,
                "kind": pr.kind,
                "baseline_correct": [b.correct for b in pr.baseline],
                "taught_correct": [g[0] for g in graded],
                "baseline_completed": [b.completed for b in pr.baseline],
                "taught_completed": [g[1] for g in graded],
                "baseline_tokens": [b.tokens for b in pr.baseline],
                "taught_tokens": [o.tokens for o in outs],
                "teaching_tokens": student.count_tokens(teaching) if teaching else 0,
                "leaked": guidance_leaks(teaching, pr.ground_truth, pr.problem),
                "baseline_logp": pr.baseline_logp,
                "taught_logp": logp,
                "teaching": teaching,
                "taught_response": outs[0].text,
            }
        )
    return rows


def run(cfg: AtlasConfig, split: str = "eval") -> dict:
    """Evaluate the `evaluation.teachers` on `split`; writes reports/eval.json, outcomes, summary and plots (for the
    dev split: reports/dev/eval.json, outcomes and summary: design decisions never read the held-out split)."""
    from atlas.core.errors import AtlasError
    from atlas.llm.student import load_student
    from atlas.teaching.metrics import evaluate_all

    if split not in ("eval", "dev"):
        raise AtlasError(f"evaluate: unknown split '{split}' (eval | dev)")
    probes = list(load_probes(split).values())
    if not probes:
        raise AtlasError(f"{paths.PROBES} has no {split} problems: run the probe stage (data.dev_fraction > 0 for dev)")
    student = load_student(cfg)
    rows_by_teacher = {}
    teachers = cfg.evaluation.teachers
    with Progress(f"evaluate [{split}]", len(teachers) * len(probes), unit="problem") as done:
        for number, name in enumerate(teachers, start=1):
            log.info("evaluate [%s]: teacher %s (%d/%d), %d problems", split, name, number, len(teachers), len(probes))
            teacher_dir = paths.TEACHER_CHECKPOINTS.get(name)  # `none`: the student alone
            rows_by_teacher[name] = evaluate_teacher(cfg, student, name, teacher_dir, probes)
            done.update(len(probes))
    result = evaluate_all(rows_by_teacher, bootstrap_samples=cfg.evaluation.bootstrap_samples, seed=cfg.evaluation.seed)
    result["inputs"] = evaluated_inputs(cfg)  # what the gate checks this report against
    if cfg.evaluation.rim:
        for name, rim in rim_judgments(cfg, rows_by_teacher, probes).items():
            result["teachers"][name]["rim"] = rim
    result["split"] = split
    outcomes = [r for rows in rows_by_teacher.values() for r in rows]
    if split == "dev":
        from atlas.core.io import atomic_write_text
        from atlas.teaching.report import summary_markdown

        write_jsonl(paths.DEV_REPORTS_DIR / paths.EVAL_OUTCOMES.name, outcomes)
        write_json(paths.DEV_REPORTS_DIR / paths.EVAL_METRICS.name, result)
        atomic_write_text(paths.DEV_REPORTS_DIR / paths.EVAL_SUMMARY.name, summary_markdown(result))
        return result
    write_jsonl(paths.EVAL_OUTCOMES, outcomes)
    write_json(paths.EVAL_METRICS, result)
    write_reports(result)
    return result


def evaluated_inputs(cfg: AtlasConfig) -> dict:
    """The sha256 of every checkpoint evaluated and of the probe records (the held-out split and its baselines)."""
    import hashlib

    from atlas.llm.models import checkpoint_hash

    names = [n for n in cfg.evaluation.teachers if n in paths.TEACHER_CHECKPOINTS]
    return {
        "checkpoints": {n: checkpoint_hash(paths.TEACHER_CHECKPOINTS[n]) for n in names},
        "probes_sha256": hashlib.sha256(paths.PROBES.read_bytes()).hexdigest(),
    }


def rim_judgments(
    cfg: AtlasConfig, rows_by_teacher: dict[str, list[dict]], probes: list[ProbeRecord]
) -> dict[str, dict]:
    """RIM judgments of each evaluation trajectory (first taught sample): per teacher, the mean score per judge,
    the escalation rate and the cost. Each row of the outcome table keeps its score (`rim_score`) and the judgment
    behind it (`rim`: `atlas.rim.rows.judgment_summary`)."""
    from atlas.rim import RIMReward, load_rim_config
    from atlas.rim.rows import judgment_summary, rows_from_columns, trajectory_columns

    judge = RIMReward(load_rim_config(cfg.rim.config_path, cfg.rim.overrides))
    by_id = {p.id: p for p in probes}
    out = {}
    for name, rows in rows_by_teacher.items():
        columns = trajectory_columns(
            [by_id[r["id"]] for r in rows], [r["teaching"] for r in rows], [r["taught_response"] for r in rows]
        )
        for row, result in zip(rows, judge.score_batch_sync(rows_from_columns(None, None, columns)), strict=True):
            row["rim_score"] = result.score
            row["rim"] = judgment_summary(result)
        out[name] = {k.replace("/", "."): v for k, v in judge.last_metrics.items()}
    return out


def write_reports(result: dict) -> None:
    """The summary, the images, the short headline (`dvc metrics show`) and the data plots (`dvc plots show`)."""
    from atlas.core.io import atomic_write_text
    from atlas.teaching.report import (
        headline,
        plot_accuracy_by_kind,
        plot_non_degradation,
        plot_records,
        summary_markdown,
    )

    atomic_write_text(paths.EVAL_SUMMARY, summary_markdown(result))
    write_json(paths.HEADLINE_METRICS, headline(result))
    records = plot_records(result)
    write_json(paths.TEACHERS_PLOT, records["teachers"])
    write_json(paths.KINDS_PLOT, records["accuracy_by_kind"])
    plot_accuracy_by_kind(result, paths.REPORTS_DIR / "accuracy_by_kind.png")
    plot_non_degradation(result, paths.REPORTS_DIR / "non_degradation.png")
