"""The promotion gate: thresholds, the interval option, the champion comparison, and the printed lines."""

from __future__ import annotations

import json

import pytest

from atlas.config import GateSettings
from atlas.ops.gate import GateCheck, check, checks_to_json, run_checks, summary

CANDIDATE = {
    "taught_accuracy": 0.62,
    "accuracy_delta": 0.08,
    "accuracy_delta_ci_low": -0.01,
    "accuracy_delta_ci_high": 0.17,
    "non_degradation_rate": 0.981,
    "leak_rate": 0.02,
}


def by_name(checks: list[GateCheck]) -> dict[str, GateCheck]:
    return {c.name: c for c in checks}


def test_line_format() -> None:
    assert (
        GateCheck("non_degradation_rate", 0.981, 0.95, ">=", True).line() == "PASS non_degradation_rate 0.981 >= 0.950"
    )
    assert GateCheck("leak_rate", 0.2, 0.1, "<=", False, "why").line() == "FAIL leak_rate 0.200 <= 0.100 (why)"
    assert GateCheck("x", None, 0.5, ">=", False).line() == "FAIL x n/a >= 0.500"


def test_default_config_passes_and_has_no_champion_checks() -> None:
    checks = run_checks(CANDIDATE, GateSettings(), champion=None)
    assert [c.name for c in checks] == ["non_degradation_rate", "accuracy_delta", "leak_rate"]
    passed, text = summary(checks)
    assert passed
    assert text.splitlines()[-1] == "gate PASSED (3 checks)"


@pytest.mark.parametrize(
    ("settings", "failing_line"),
    [
        ({"min_accuracy_delta": 1.5}, "FAIL accuracy_delta 0.080 >= 1.500"),  # impossible: delta <= 1
        ({"min_non_degradation_rate": 1.0}, "FAIL non_degradation_rate 0.981 >= 1.000"),
        ({"max_leak_rate": 0.0}, "FAIL leak_rate 0.020 <= 0.000"),
        ({"min_accuracy_delta": 0.0, "use_interval_lower_bound": True}, "FAIL accuracy_delta_ci_low -0.010 >= 0.000"),
    ],
)
def test_failing_threshold_names_the_metric(settings: dict, failing_line: str) -> None:
    checks = run_checks(CANDIDATE, GateSettings(**settings), champion=None)
    passed, text = summary(checks)
    assert not passed
    assert any(line.startswith(failing_line) for line in text.splitlines()), text
    assert sum(line.startswith("FAIL") for line in text.splitlines()) == 1
    assert text.splitlines()[-1].startswith("gate FAILED: ")
    assert failing_line.split()[1] in text.splitlines()[-1]


def test_point_delta_passes_where_the_interval_fails() -> None:
    cfg = GateSettings(min_accuracy_delta=0.0)
    assert summary(run_checks(CANDIDATE, cfg, None))[0]
    assert not summary(run_checks(CANDIDATE, cfg.model_copy(update={"use_interval_lower_bound": True}), None))[0]


def test_regression_against_planted_champion_fails() -> None:
    champion = {"taught_accuracy": 0.75, "non_degradation_rate": 0.97}
    checks = by_name(run_checks(CANDIDATE, GateSettings(champion_tolerance=0.05), champion))
    accuracy = checks["taught_accuracy_vs_champion"]
    assert not accuracy.passed
    assert accuracy.threshold == pytest.approx(0.70)
    assert accuracy.line() == "FAIL taught_accuracy_vs_champion 0.620 >= 0.700 (champion 0.750 - tolerance 0.050)"
    assert checks["non_degradation_rate_vs_champion"].passed
    passed, text = summary(list(checks.values()))
    assert not passed and "taught_accuracy_vs_champion" in text.splitlines()[-1]


@pytest.mark.parametrize(
    ("champion_accuracy", "tolerance", "passes"),
    [(0.62, 0.0, True), (0.63, 0.0, False), (0.65, 0.03, True), (0.66, 0.03, False)],
)
def test_champion_tolerance_boundary(champion_accuracy: float, tolerance: float, passes: bool) -> None:
    champion = {"taught_accuracy": champion_accuracy, "non_degradation_rate": 0.5}
    checks = by_name(run_checks(CANDIDATE, GateSettings(champion_tolerance=tolerance), champion))
    assert checks["taught_accuracy_vs_champion"].passed is passes


def test_missing_values_fail_instead_of_passing() -> None:
    checks = by_name(run_checks({"accuracy_delta": 0.1}, GateSettings(), champion={"non_degradation_rate": 0.9}))
    assert not checks["non_degradation_rate"].passed
    assert "metric missing" in checks["non_degradation_rate"].line()
    assert not checks["taught_accuracy_vs_champion"].passed
    assert "champion value missing" in checks["taught_accuracy_vs_champion"].detail
    assert checks["accuracy_delta"].passed


@pytest.mark.parametrize("bad", [float("nan"), None, "0.9", True])
def test_non_numeric_values_count_as_missing(bad: object) -> None:
    checks = by_name(run_checks(dict(CANDIDATE, leak_rate=bad), GateSettings(), None))
    assert not checks["leak_rate"].passed


def test_check_comparisons() -> None:
    assert check("a", 0.5, 0.5, ">=").passed
    assert check("a", 0.5, 0.5, "<=").passed
    assert not check("a", 0.4, 0.5, ">=").passed
    assert not check("a", 0.6, 0.5, "<=").passed
    assert not check("a", 0.6, None, "<=").passed


def test_no_checks_does_not_pass_and_json_report() -> None:
    assert summary([]) == (False, "gate FAILED: no checks were run")
    report = checks_to_json(run_checks(CANDIDATE, GateSettings(max_leak_rate=0.01), None))
    assert report["passed"] is False
    assert [c["name"] for c in report["checks"] if not c["passed"]] == ["leak_rate"]
    json.dumps(report, allow_nan=False)


# -- issue 13 item 3: the gate reads only an evaluation of the checkpoint it gates --------------------------------


def test_gate_and_register_on_a_fresh_clone_refuse(project, capsys):
    """A fresh clone has no evaluation: `atlas gate && atlas register` must not pass on anything."""
    from atlas.cli import main

    assert main(["gate"]) == 2
    assert "reports/eval.json is missing" in capsys.readouterr().err
    assert main(["register"]) == 2


def test_a_refusing_gate_leaves_no_verdict_of_an_earlier_run(project, capsys):
    """Issue 14 item 5: `dvc metrics show` reads the gate's verdict; a gate that refuses must not leave the last
    run's "passed" in place."""
    from atlas.cli import main

    (project / "reports").mkdir(exist_ok=True)
    verdict = project / "reports/gate_verdict.json"
    verdict.write_text(json.dumps({"gate": {"passed": True, "failed": ""}}))
    assert main(["gate"]) == 2
    assert "reports/eval.json is missing" in capsys.readouterr().err
    assert not verdict.exists()


def test_a_report_that_names_no_checkpoint_is_refused(project, capsys):
    """The old committed reports/eval.json (metrics without the hashes of what was evaluated) and an empty
    checkpoint folder: nothing passes, nothing is registered."""
    from atlas.cli import main

    (project / "reports").mkdir(exist_ok=True)
    metrics = {"non_degradation_rate": 1.0, "accuracy_delta": 0.1, "leak_rate": 0.0, "taught_accuracy": 0.5}
    (project / "reports/eval.json").write_text(json.dumps({"teachers": {"grpo": {"overall": metrics}}}))
    (project / "data/checkpoints/grpo").mkdir(parents=True)
    assert main(["gate"]) == 2
    assert "does not say which checkpoint it evaluated" in capsys.readouterr().err
    report = {"teachers": {"grpo": {"overall": metrics}}, "inputs": {"checkpoints": {"grpo": "e3b0c442"}}}
    (project / "reports/eval.json").write_text(json.dumps(report))
    assert main(["gate"]) == 2
    assert "holds no model weights" in capsys.readouterr().err
