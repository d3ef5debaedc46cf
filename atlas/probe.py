"""Probe stage: what the frozen student does alone. Computed once, cached by DVC, reused by GRPO and evaluation.

For every problem used downstream (the GRPO training prompts and the evaluation problems): `k` baseline answers
graded against the ground truth, the student's diagnostic probe (`protocol.probe`: a separate short greedy
"approach" generation, or the first baseline answer as its "attempt"), and the teacher-forced log-probability of the
gold answer without guidance (the reference point of the likelihood reward).
"""

from __future__ import annotations

import logging
import statistics

from atlas import paths
from atlas.config import AtlasConfig
from atlas.io import read_jsonl, write_json, write_jsonl
from atlas.protocol import grade, likelihood_prompt, likelihood_target, probe_messages, student_messages

log = logging.getLogger(__name__)


def selected_problems(cfg: AtlasConfig) -> list[dict]:
    """The problems downstream stages use (validate already applied `data.max_train`/`max_eval`): train, then eval."""
    train = [r for r in read_jsonl(paths.TRAIN) if r.get("ground_truth")]
    evals = [r for r in read_jsonl(paths.EVAL) if r.get("ground_truth")]
    return train + evals


def probe_records(cfg: AtlasConfig, student, problems: list[dict]) -> list[dict]:
    """Run steps 1-2 of the protocol (and the no-guidance likelihood) for `problems` with a `HFGenerator`."""
    p = cfg.protocol
    baselines = student.generate(
        [student_messages(r["problem"], None, p.few_shot) for r in problems],
        max_new_tokens=p.student_max_tokens,
        temperature=p.student_temperature,
        num_samples=p.baseline_k,
        seed=p.seed,
        desc=f"student: baseline x{p.baseline_k}",
    )
    if p.probe == "attempt":
        probes = [samples[0].text for samples in baselines]
    else:
        outs = student.generate(
            [probe_messages(r["problem"]) for r in problems],
            max_new_tokens=p.probe_max_tokens,
            temperature=0.0,
            desc="student: probes",
        )
        probes = [o[0].text for o in outs]
    logps = student.logprob(
        [likelihood_prompt(student.render(student_messages(r["problem"], None, p.few_shot))) for r in problems],
        [likelihood_target(r["ground_truth"]) for r in problems],
        desc="student: log p(gold)",
    )
    out = []
    for row, probe, samples, logp in zip(problems, probes, baselines, logps, strict=True):
        graded = []
        for s in samples:
            correct, completed = grade(s.text, row["ground_truth"], s.truncated)
            graded.append(
                {
                    "text": s.text,
                    "tokens": s.tokens,
                    "truncated": s.truncated,
                    "correct": correct,
                    "completed": completed,
                }
            )
        out.append(
            {
                "id": row["id"],
                "split": row.get("split"),
                "kind": row.get("kind") or "unknown",
                "problem": row["problem"],
                "ground_truth": row["ground_truth"],
                "probe": probe.strip(),
                "baseline": graded,
                "baseline_accuracy": sum(g["correct"] for g in graded) / len(graded),
                "baseline_logp": logp,
            }
        )
    return out


def run_probe(cfg: AtlasConfig) -> dict:
    from atlas.generation import load_student

    student = load_student(cfg)
    records = probe_records(cfg, student, selected_problems(cfg))
    write_jsonl(paths.PROBES, records)
    metrics = {}
    for split in ("train", "eval"):
        rows = [r for r in records if r["split"] == split]
        if rows:
            samples = [s for r in rows for s in r["baseline"]]
            metrics[split] = {
                "problems": len(rows),
                "baseline_accuracy": statistics.fmean(r["baseline_accuracy"] for r in rows),
                "completion_rate": statistics.fmean(s["completed"] for s in samples),
                "response_tokens": statistics.fmean(s["tokens"] for s in samples),
                "baseline_logp": statistics.fmean(r["baseline_logp"] for r in rows),
            }
    write_json(paths.PROBE_METRICS, metrics)
    return metrics


def load_probes(split: str | None = None) -> dict[str, dict]:
    return {r["id"]: r for r in read_jsonl(paths.PROBES) if split is None or r["split"] == split}
