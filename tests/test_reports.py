"""Markdown summary and PNG plots of the evaluation report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from atlas.core.errors import InputError
from atlas.teaching import metrics
from atlas.teaching import report as reports

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def outcome(teacher: str, pid: str, kind: str, baseline: list[bool], taught: list[bool], logp: bool) -> dict:
    k = len(baseline)
    return {
        "teacher": teacher,
        "id": pid,
        "kind": kind,
        "baseline_correct": baseline,
        "taught_correct": taught,
        "baseline_completed": [True] * k,
        "taught_completed": [True] * k,
        "baseline_tokens": [200] * k,
        "taught_tokens": [150] * k,
        "teaching_tokens": 0 if teacher == "none" else 30,
        "leaked": False,
        "baseline_logp": -4.0 if logp else None,
        "taught_logp": -3.0 if logp else None,
    }


@pytest.fixture(scope="module")
def eval_json() -> dict:
    rows = []
    pattern = {
        "none": [([True, False], [False, True]), ([False, False], [False, False])],
        "grpo": [([True, False], [True, True]), ([False, False], [True, False])],
        "sft": [([True, False], [True, False]), ([False, False], [False, False])],
    }
    for teacher, problems in pattern.items():
        for i, (baseline, taught) in enumerate(problems * 2):
            kind = "rate" if i % 2 else "add"
            rows.append(outcome(teacher, f"p{i}", kind, baseline, taught, logp=teacher == "grpo"))
    return metrics.evaluate_all(metrics.group_by_teacher(rows), bootstrap_samples=100)


def test_summary_markdown_puts_teachers_side_by_side(eval_json: dict) -> None:
    text = reports.summary_markdown(eval_json)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| Metric"))
    # Fixed order: student alone, SFT, GRPO (champion absent), whatever the input order.
    assert header == "| Metric | student alone | SFT teacher | GRPO teacher |"
    ndr = next(line for line in lines if line.startswith("| Non-Degradation Rate (per sample pair)"))
    assert ndr == "| Non-Degradation Rate (per sample pair) | 75.0% | 100.0% | 100.0% |"
    grpo = eval_json["teachers"]["grpo"]["overall"]
    delta = next(line for line in lines if line.startswith("| Accuracy delta"))
    assert (
        f"+50.0 pp [{100 * grpo['accuracy_delta_ci_low']:+.1f}, {100 * grpo['accuracy_delta_ci_high']:+.1f}]" in delta
    )
    assert "| Response tokens: baseline → taught | 200 → 150 (25.0% fewer) |" in text
    assert "| log p(gold): delta (baseline → taught) | – | – | +1.000 (-4.000 → -3.000) |" in text
    assert "| Problems × samples (k) | 4 × 2 | 4 × 2 | 4 × 2 |" in text
    assert "## Accuracy by problem kind" in text
    assert any(line.startswith("| add (n=2) |") for line in lines)


def test_summary_drops_the_logp_row_when_no_teacher_has_it(eval_json: dict) -> None:
    trimmed = {"teachers": {k: v for k, v in eval_json["teachers"].items() if k != "grpo"}}
    assert "log p(gold)" not in reports.summary_markdown(trimmed)


def test_unknown_teachers_come_after_the_known_ones(eval_json: dict) -> None:
    data = {"teachers": {"my-teacher": eval_json["teachers"]["sft"], "none": eval_json["teachers"]["none"]}}
    header = next(line for line in reports.summary_markdown(data).splitlines() if line.startswith("| Metric"))
    assert header == "| Metric | student alone | my-teacher |"


@pytest.mark.parametrize("bad", [{}, {"teachers": {}}, {"teachers": {"grpo": {"per_kind": {}}}}, []])
def test_bad_report_is_an_input_error(bad: object) -> None:
    with pytest.raises(InputError, match="evaluation report"):
        reports.summary_markdown(bad)  # type: ignore[arg-type]


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 5_000
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "temp files left behind"


def test_headline_is_short_and_names_each_teacher(eval_json: dict) -> None:
    """Issue 14 item 5: what `dvc metrics show` prints (reports/headline.json) is a few numbers per teacher."""
    head = reports.headline(eval_json)
    grpo = eval_json["teachers"]["grpo"]["overall"]
    assert set(head) == {"student", "sft", "grpo", "grpo-sft"}  # `none` is the student alone
    assert head["grpo-sft"] == {"delta": round(eval_json["paired"]["grpo-sft"]["difference"], 4)}
    assert head["student"] == {"accuracy": round(eval_json["teachers"]["none"]["overall"]["baseline_accuracy"], 4)}
    assert head["grpo"] == {
        "accuracy": round(grpo["taught_accuracy"], 4),
        "delta": round(grpo["accuracy_delta"], 4),
        "ndr": round(grpo["non_degradation_rate"], 4),
    }
    paired = {**eval_json, "paired": {"grpo-sft": {"difference": 0.123456}}}
    assert reports.headline(paired)["grpo-sft"] == {"delta": 0.1235}


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        ([], []),
        ([{"step": 1, "reward": 0.5, "loss": 2.0}], [{"step": 1, "reward": 0.5}]),
        ([{"step": 2, "rewards/rim/mean": 0.1, "kl": None}], [{"step": 2, "rewards_rim_mean": 0.1}]),
        ([{"step": 3, "train_runtime": 9.0}, {"reward": 1.0}], []),  # the final summary; no step
    ],
)
def test_curve_records_keep_logged_steps(history: list, expected: list) -> None:
    assert reports.curve_records(history, ("reward", "rewards/rim/mean", "kl")) == expected


def test_plot_records_put_teachers_and_kinds_side_by_side(eval_json: dict) -> None:
    records = reports.plot_records(eval_json)
    assert [r["teacher"] for r in records["teachers"]] == ["student alone", "SFT teacher", "GRPO teacher"]
    by_kind = records["accuracy_by_kind"]
    labels = [r["kind_teacher"] for r in by_kind][:3]
    assert labels == ["add · student alone", "add · SFT teacher", "add · GRPO teacher"]
    grpo_add = eval_json["teachers"]["grpo"]["per_kind"]["add"]["taught_accuracy"]
    assert by_kind[2]["taught_accuracy"] == grpo_add


def test_plots_write_pngs(eval_json: dict, tmp_path: Path) -> None:
    accuracy = reports.plot_accuracy_by_kind(eval_json, tmp_path / "plots" / "accuracy_by_kind.png")
    ndr = reports.plot_non_degradation(eval_json, tmp_path / "plots" / "non_degradation.png")
    history = {
        "train/reward": [(step, 0.1 * step) for step in range(40)],
        "train/accuracy_delta": [(0, -0.1), (1, 0.0), (2, float("nan")), (3, 0.2)],
        "train/kl": [],
    }
    curves = reports.plot_training_curves(history, tmp_path / "plots" / "grpo_curves.png")
    for path in (accuracy, ndr, curves):
        _assert_png(path)


def test_plot_overwrites_and_empty_history_still_renders(tmp_path: Path) -> None:
    target = tmp_path / "curves.png"
    target.write_bytes(b"old")
    assert reports.plot_training_curves({}, target) == target
    _assert_png(target)


def test_write_text_atomic(tmp_path: Path) -> None:
    from atlas.core.io import atomic_write_text

    path = atomic_write_text(tmp_path / "sub" / "eval_summary.md", "# hi\n")
    assert path.read_text(encoding="utf-8") == "# hi\n"
    assert [p.name for p in path.parent.iterdir()] == ["eval_summary.md"]


def test_library_modules_import_no_heavy_packages() -> None:
    code = (
        "import sys, atlas.teaching.metrics, atlas.ops.gate, atlas.teaching.report; "
        "heavy = [m for m in ('matplotlib', 'pandas', 'mlflow', 'torch', 'scipy') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
