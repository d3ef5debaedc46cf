"""The promotion gate: the candidate teacher's evaluation metrics (`gate.teacher` in reports/eval.json) against the
configured thresholds and against the registry's champion, re-evaluated on the same held-out split.

The checks themselves are pure (`check`, `run_checks`, `summary`). `gate(cfg)` runs them inside the gate's MLflow
run: it reads reports/eval.json and first makes sure the report belongs to what it gates (the sha256 of the
checkpoint and of the probe records that evaluate recorded must match the files now: a stale or foreign report is
an error, never a pass), re-evaluates the champion when there is one of the candidate's lineage (cached per
checkpoint, split and settings; a champion of another lineage is not compared, and the report says so), writes
reports/gate.json (with the hashes it checked, for `register`) and the short verdict reports/gate_verdict.json
(`dvc metrics show`; removed first, so a gate that refuses leaves none), logs one line per check and raises
`GateFailed` naming each failed check.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from atlas.config import AtlasConfig, GateSettings
from atlas.core import paths
from atlas.core.errors import AtlasError, GateFailed
from atlas.core.io import read_json, write_json
from atlas.ops import registry, tracking

log = logging.getLogger(__name__)

Comparison = Literal[">=", "<="]
_EPSILON = 1e-9


@dataclass(frozen=True)
class GateCheck:
    """One check: `value <comparison> threshold`. A missing value or threshold fails (nothing passes by default)."""

    name: str
    value: float | None
    threshold: float | None
    comparison: Comparison
    passed: bool
    detail: str = ""

    def line(self) -> str:
        """One human line, e.g. `PASS non_degradation_rate 0.981 >= 0.950`."""
        status = "PASS" if self.passed else "FAIL"
        text = f"{status} {self.name} {_fmt(self.value)} {self.comparison} {_fmt(self.threshold)}"
        return f"{text} ({self.detail})" if self.detail else text


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _number(metrics: Mapping[str, Any] | None, key: str) -> float | None:
    if metrics is None:
        return None
    value = metrics.get(key)
    if value is None or isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def check(
    name: str, value: float | None, threshold: float | None, comparison: Comparison, detail: str = ""
) -> GateCheck:
    """Build a GateCheck, deciding `passed`; a missing value or threshold fails and says so in the detail."""
    if value is None or threshold is None:
        missing = "metric missing" if value is None else "threshold missing"
        return GateCheck(name, value, threshold, comparison, False, f"{missing}; {detail}" if detail else missing)
    # A hair of slack so that e.g. 0.62 >= 0.65 - 0.03 (= 0.6200000000000001 in floating point) passes.
    passed = value >= threshold - _EPSILON if comparison == ">=" else value <= threshold + _EPSILON
    return GateCheck(name, value, threshold, comparison, passed, detail)


def run_checks(metrics: Mapping[str, Any], cfg: GateSettings, champion: Mapping[str, Any] | None) -> list[GateCheck]:
    """The candidate's overall metrics against the thresholds in `cfg`, and against `champion` (the champion's
    overall metrics on the current split) when one exists."""
    checks = [
        check("non_degradation_rate", _number(metrics, "non_degradation_rate"), cfg.min_non_degradation_rate, ">="),
    ]
    if cfg.use_interval_lower_bound:
        checks.append(
            check(
                "accuracy_delta_ci_low",
                _number(metrics, "accuracy_delta_ci_low"),
                cfg.min_accuracy_delta,
                ">=",
                "lower bound of the bootstrap 95% interval",
            )
        )
    else:
        checks.append(check("accuracy_delta", _number(metrics, "accuracy_delta"), cfg.min_accuracy_delta, ">="))
    checks.append(check("leak_rate", _number(metrics, "leak_rate"), cfg.max_leak_rate, "<="))
    if champion is not None:
        tolerance = cfg.champion_tolerance
        for key in ("taught_accuracy", "non_degradation_rate"):
            champion_value = _number(champion, key)
            threshold = None if champion_value is None else champion_value - tolerance
            detail = (
                "champion value missing"
                if champion_value is None
                else f"champion {champion_value:.3f} - tolerance {tolerance:.3f}"
            )
            checks.append(check(f"{key}_vs_champion", _number(metrics, key), threshold, ">=", detail))
    return checks


def summary(checks: list[GateCheck]) -> tuple[bool, str]:
    """(passed, text): one line per check, then a verdict line naming the failed checks. No checks does not pass."""
    if not checks:
        return False, "gate FAILED: no checks were run"
    failed = [c.name for c in checks if not c.passed]
    lines = [c.line() for c in checks]
    if failed:
        lines.append(f"gate FAILED: {', '.join(failed)}")
    else:
        lines.append(f"gate PASSED ({len(checks)} checks)")
    return not failed, "\n".join(lines)


def checks_to_json(checks: list[GateCheck]) -> dict[str, Any]:
    """The content of reports/gate.json: {"passed": bool, "checks": [{name, value, threshold, ...}, ...]}."""
    passed, _ = summary(checks)
    return {"passed": passed, "checks": [asdict(c) for c in checks]}


def champion_metrics(cfg: AtlasConfig, champion: registry.Version, candidate_hash: str, candidate: dict) -> dict:
    """The champion's overall metrics on the current eval split: re-evaluated once per (checkpoint, split, config)."""
    from atlas.llm.student import load_student
    from atlas.stages.evaluate import evaluate_teacher
    from atlas.stages.probe import load_probes
    from atlas.teaching.metrics import teacher_metrics

    champ_hash = champion.tags.get("checkpoint_sha256", "")
    if champ_hash and champ_hash == candidate_hash:
        return candidate
    probes_hash = hashlib.sha256(paths.PROBES.read_bytes()).hexdigest()
    settings = cfg.model_dump(include={"protocol", "evaluation", "models"})
    key = hashlib.sha256(json.dumps([champ_hash, champion.version, probes_hash, settings], default=str).encode())
    cache = paths.STATE_DIR / "champion_eval" / f"{key.hexdigest()[:16]}.json"
    if cache.exists():
        return read_json(cache)
    log.info("re-evaluating champion version %s on the current eval split", champion.version)
    ckpt = registry.download(champion, paths.STATE_DIR / "champions" / f"v{champion.version}")
    probes = list(load_probes("eval").values())
    rows = evaluate_teacher(cfg, load_student(cfg), "champion", ckpt, probes)
    metrics = teacher_metrics(rows, bootstrap_samples=cfg.evaluation.bootstrap_samples, seed=cfg.evaluation.seed)
    write_json(cache, metrics)
    return metrics


def evaluated_checkpoint(cfg: AtlasConfig) -> tuple[dict, str]:
    """(reports/eval.json, the gated checkpoint's sha256), after checking that the report evaluated exactly the
    checkpoint and the probe records that are there now."""
    from atlas.llm.models import checkpoint_hash

    if not paths.EVAL_METRICS.exists():
        raise AtlasError(f"{paths.EVAL_METRICS} is missing: run the pipeline (`dvc repro`, or `dvc pull`) first")
    result = read_json(paths.EVAL_METRICS)
    name = cfg.gate.teacher
    if name not in result.get("teachers", {}):
        raise AtlasError(f"{paths.EVAL_METRICS} has no metrics for teacher '{name}' (set evaluation.teachers)")
    inputs = result.get("inputs") or {}
    recorded = (inputs.get("checkpoints") or {}).get(name)
    if not recorded:
        raise AtlasError(
            f"{paths.EVAL_METRICS} does not say which checkpoint it evaluated: run `dvc repro evaluate` to remake it"
        )
    ckpt = paths.TEACHER_CHECKPOINTS[name]
    registry.check_checkpoint(ckpt)
    sha = checkpoint_hash(ckpt)
    if sha != recorded:
        raise AtlasError(
            f"{paths.EVAL_METRICS} evaluated {ckpt} with sha256 {recorded[:12]}, but it now holds {sha[:12]}: the "
            "report is stale; run `dvc repro evaluate` (or the whole pipeline)"
        )
    probes = hashlib.sha256(paths.PROBES.read_bytes()).hexdigest() if paths.PROBES.exists() else None
    if probes != inputs.get("probes_sha256"):
        raise AtlasError(
            f"{paths.EVAL_METRICS} was made with other probe records than {paths.PROBES}: run `dvc repro evaluate`"
        )
    return result, sha


def gate(cfg: AtlasConfig) -> dict:
    """Check the candidate against thresholds and the champion; raises GateFailed (naming each failed check)."""
    paths.GATE_VERDICT.unlink(missing_ok=True)  # a gate that refuses below leaves no verdict of an earlier run
    result, sha = evaluated_checkpoint(cfg)
    name = cfg.gate.teacher
    candidate = result["teachers"][name]["overall"]
    lineage = registry.lineage_id(cfg)
    with tracking.stage_run(cfg, "gate"):
        champion = registry.alias_version(cfg.tracking.registered_model, registry.CHAMPION)
        note = ""
        if champion is not None and champion.lineage != lineage:
            note = (
                f"champion v{champion.version} is of another lineage (preset {champion.tags.get('preset', '?')}): "
                "not compared, and this teacher cannot replace it"
            )
            log.info("%s", note)
            champion = None
        champ = champion_metrics(cfg, champion, sha, candidate) if champion else None
        checks = run_checks(candidate, cfg.gate, champ)
        passed, text = summary(checks)
        report = {
            **checks_to_json(checks),
            "teacher": name,
            "checkpoint_sha256": sha,
            "eval_sha256": hashlib.sha256(paths.EVAL_METRICS.read_bytes()).hexdigest(),
            "lineage": lineage,
            "champion_version": champion.version if champion else None,
            "champion_metrics": champ,
            "champion_note": note,
        }
        write_json(paths.GATE_REPORT, report)
        failed = [c.name for c in checks if not c.passed]
        write_json(paths.GATE_VERDICT, {"gate": {"passed": passed, "failed": ",".join(failed)}})
        if champ is not None:  # the teachers side by side with the champion, re-evaluated on this split
            from atlas.teaching.report import summary_markdown

            table = {"teachers": {**result["teachers"], "champion": {"overall": champ, "per_kind": {}}}}
            tracking.log_metrics(champ, prefix="champion")
            tracking.get_mlflow().log_text(summary_markdown(table), "gate/summary_with_champion.md")
        tracking.log_metrics({"gate.passed": passed, **{f"gate.{c.name}": c.value for c in checks}})
        tracking.log_artifact(paths.GATE_REPORT, "gate")
        for line in text.splitlines():
            log.info("%s", line)
    if not passed:
        raise GateFailed(text)
    return report
