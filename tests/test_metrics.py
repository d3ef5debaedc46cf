"""Metric definitions (docs/metrics.md) checked on hand-built outcome tables."""

from __future__ import annotations

import json
import math

import pytest

from atlas.core.errors import InputError
from atlas.teaching import metrics

T, F = True, False


def row(
    pid: str,
    baseline: list[bool],
    taught: list[bool],
    *,
    kind: str = "add",
    teacher: str = "grpo",
    baseline_completed: list[bool] | None = None,
    taught_completed: list[bool] | None = None,
    baseline_tokens: list[int] | None = None,
    taught_tokens: list[int] | None = None,
    teaching_tokens: int = 10,
    leaked: bool = False,
    baseline_logp: float | None = None,
    taught_logp: float | None = None,
) -> dict:
    return {
        "teacher": teacher,
        "id": pid,
        "kind": kind,
        "baseline_correct": baseline,
        "taught_correct": taught,
        "baseline_completed": baseline_completed if baseline_completed is not None else [True] * len(baseline),
        "taught_completed": taught_completed if taught_completed is not None else [True] * len(taught),
        "baseline_tokens": baseline_tokens if baseline_tokens is not None else [100] * len(baseline),
        "taught_tokens": taught_tokens if taught_tokens is not None else [100] * len(taught),
        "teaching_tokens": teaching_tokens,
        "leaked": leaked,
        "baseline_logp": baseline_logp,
        "taught_logp": taught_logp,
    }


# Four problems, k = 2. Per problem (baseline acc a, taught acc c, degraded pairs, improved pairs):
#   p1: a=1.0 c=0.5 D=1 I=0   p2: a=0.0 c=1.0 D=0 I=2   p3: a=1.0 c=0.5 D=1 I=0   p4: a=0.0 c=0.5 D=0 I=1
HAND_TABLE = [
    row(
        "p1",
        [T, T],
        [T, F],
        kind="add",
        baseline_completed=[T, F],
        taught_completed=[T, T],
        baseline_tokens=[100, 300],
        taught_tokens=[50, 50],
        teaching_tokens=20,
        baseline_logp=-4.0,
        taught_logp=-2.0,
    ),
    row(
        "p2",
        [F, F],
        [T, T],
        kind="rate",
        baseline_completed=[F, F],
        taught_completed=[T, T],
        baseline_tokens=[200, 200],
        taught_tokens=[100, 100],
        teaching_tokens=40,
        leaked=True,
        baseline_logp=-6.0,
        taught_logp=-5.0,
    ),
    row("p3", [T, T], [F, T], kind="add", baseline_tokens=[200, 200], taught_tokens=[150, 150], baseline_logp=-1.0),
    row("p4", [F, F], [T, F], kind="rate", baseline_tokens=[200, 200], taught_tokens=[150, 150], teaching_tokens=30),
]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("baseline_accuracy", 0.5),
        ("taught_accuracy", 0.625),
        ("accuracy_delta", 0.125),
        ("non_degradation_rate", 0.75),  # 2 degraded pairs of 8
        ("non_degradation_rate_problem", 0.5),  # p2 and p4 have taught >= baseline
        ("improvement_rate", 0.375),
        ("degradation_rate", 0.25),
        ("completion_rate_baseline", 5 / 8),
        ("completion_rate_taught", 1.0),
        ("response_tokens_baseline", 200.0),
        ("response_tokens_taught", 112.5),
        ("token_reduction", 1 - 112.5 / 200),
        ("teaching_tokens", 25.0),  # (20 + 40 + 10 + 30) / 4
        ("leak_rate", 0.25),
        ("logp_gold_baseline", (-4.0 - 6.0 - 1.0) / 3),
        ("logp_gold_taught", (-2.0 - 5.0) / 2),
        ("logp_gold_delta", (2.0 + 1.0) / 2),  # only problems with both values
        ("n_problems", 4),
        ("n_pairs", 8),
        ("k", 2),
    ],
)
def test_teacher_metrics_on_hand_table(key: str, expected: float) -> None:
    result = metrics.teacher_metrics(HAND_TABLE, bootstrap_samples=200)
    assert result[key] == pytest.approx(expected)


def test_all_keys_present_and_json_clean() -> None:
    result = metrics.teacher_metrics(HAND_TABLE, bootstrap_samples=50)
    assert tuple(result) == metrics.METRIC_KEYS
    json.dumps(result, allow_nan=False)


def test_improvement_minus_degradation_equals_delta_with_equal_k() -> None:
    result = metrics.teacher_metrics(HAND_TABLE, bootstrap_samples=50)
    assert result["improvement_rate"] - result["degradation_rate"] == pytest.approx(result["accuracy_delta"])


@pytest.mark.parametrize(
    ("baseline", "taught", "pair_ndr", "problem_ndr"),
    [
        ([T], [F], 0.0, 0.0),  # k = 1: the two variants agree
        ([T], [T], 1.0, 1.0),
        ([T, F, F, F], [F, T, F, F], 0.75, 1.0),  # churn without loss: the problem is fine, one pair degraded
        ([T, T, F, F], [T, F, F, F], 0.75, 0.0),
        ([F, F, F, F], [F, F, F, F], 1.0, 1.0),  # never right: nothing to degrade
    ],
)
def test_two_ndr_variants(baseline: list[bool], taught: list[bool], pair_ndr: float, problem_ndr: float) -> None:
    result = metrics.teacher_metrics([row("p", baseline, taught)], bootstrap_samples=20)
    assert result["non_degradation_rate"] == pytest.approx(pair_ndr)
    assert result["non_degradation_rate_problem"] == pytest.approx(problem_ndr)


def test_unequal_k_pairs_up_to_the_shorter_list() -> None:
    # Accuracy uses every sample; pairs only the first min(kb, kt).
    result = metrics.teacher_metrics([row("p", [T, T, F, F], [F, T])], bootstrap_samples=20)
    assert result["baseline_accuracy"] == 0.5
    assert result["taught_accuracy"] == 0.5
    assert result["n_pairs"] == 2
    assert result["degradation_rate"] == 0.5  # pair 1: T -> F
    assert result["k"] == 4


def test_bootstrap_interval_exact_two_point_case() -> None:
    # Deltas {0, 1}: resampled means are 0, 0.5 or 1 with probability 1/4, 1/2, 1/4, so the 2.5% / 97.5%
    # percentiles of 1000 draws are exactly 0 and 1.
    table = [row("a", [F], [F]), row("b", [F], [T])]
    result = metrics.teacher_metrics(table, bootstrap_samples=1000, seed=3)
    assert result["accuracy_delta"] == 0.5
    assert (result["accuracy_delta_ci_low"], result["accuracy_delta_ci_high"]) == (0.0, 1.0)


def test_bootstrap_interval_matches_normal_approximation() -> None:
    values = [1.0] * 120 + [0.0] * 280  # mean 0.3, standard error sqrt(0.3 * 0.7 / 400)
    low, high = metrics.bootstrap_mean_ci(values, samples=4000, seed=0)
    se = math.sqrt(0.3 * 0.7 / 400)
    assert low == pytest.approx(0.3 - 1.96 * se, abs=0.006)
    assert high == pytest.approx(0.3 + 1.96 * se, abs=0.006)


def test_bootstrap_is_seeded_and_collapses_on_constant_data() -> None:
    values = [0.1, -0.4, 0.5, 0.0, 0.25, 1.0, -1.0]
    assert metrics.bootstrap_mean_ci(values, seed=7) == metrics.bootstrap_mean_ci(values, seed=7)
    assert metrics.bootstrap_mean_ci(values, seed=7) != metrics.bootstrap_mean_ci(values, seed=8)
    assert metrics.bootstrap_mean_ci([0.25] * 5) == (0.25, 0.25)
    assert metrics.bootstrap_mean_ci([-0.5]) == (-0.5, -0.5)


def test_bootstrap_blocks_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    values = [float(i % 5) for i in range(37)]
    whole = metrics.bootstrap_mean_ci(values, samples=300, seed=1)
    monkeypatch.setattr(metrics, "_BOOTSTRAP_BLOCK", 100)  # blocks of 2 resamples
    assert metrics.bootstrap_mean_ci(values, samples=300, seed=1) == whole


def test_bootstrap_rejects_empty_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        metrics.bootstrap_mean_ci([])


def test_undefined_metrics_are_none_not_nan() -> None:
    table = [row("p", [T], [T], baseline_tokens=[0], taught_tokens=[0])]
    result = metrics.teacher_metrics(table, bootstrap_samples=20)
    for key in ("token_reduction", "logp_gold_baseline", "logp_gold_taught", "logp_gold_delta"):
        assert result[key] is None
    json.dumps(result, allow_nan=False)


def test_per_kind_and_evaluate_all_shape() -> None:
    none_rows = [dict(r, teacher="none", teaching_tokens=0) for r in HAND_TABLE]
    report = metrics.evaluate_all({"none": none_rows, "grpo": HAND_TABLE}, bootstrap_samples=50, seed=1)
    assert list(report["teachers"]) == ["none", "grpo"]
    grpo = report["teachers"]["grpo"]
    assert list(grpo["per_kind"]) == ["add", "rate"]
    assert grpo["per_kind"]["add"]["n_problems"] == 2
    assert grpo["per_kind"]["add"]["accuracy_delta"] == pytest.approx(-0.5)  # p1 and p3
    assert grpo["per_kind"]["rate"]["accuracy_delta"] == pytest.approx(0.75)  # p2 and p4
    assert grpo["overall"] == metrics.teacher_metrics(HAND_TABLE, bootstrap_samples=50, seed=1)
    assert report["teachers"]["none"]["overall"]["teaching_tokens"] == 0
    json.dumps(report, allow_nan=False)


def test_problem_table_records() -> None:
    table = metrics.problem_table(HAND_TABLE)
    assert [r["id"] for r in table] == ["p1", "p2", "p3", "p4"]
    first = table[0]
    assert (first["accuracy_delta"], first["degraded_pairs"], first["improved_pairs"]) == (-0.5, 1, 0)
    assert first["logp_gold_delta"] == pytest.approx(2.0)
    assert table[3]["logp_gold_delta"] is None


def test_group_by_teacher_keeps_first_seen_order() -> None:
    rows = [row("a", [T], [T], teacher="sft"), row("a", [T], [T], teacher="none"), row("b", [T], [T], teacher="sft")]
    groups = metrics.group_by_teacher(rows)
    assert list(groups) == ["sft", "none"]
    assert [r["id"] for r in groups["sft"]] == ["a", "b"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": ""}, "id"),
        ({"kind": None}, "kind"),
        ({"baseline_correct": [1, 0]}, "baseline_correct"),
        ({"baseline_correct": [], "baseline_completed": [], "baseline_tokens": []}, "baseline_correct"),
        ({"taught_completed": [True]}, "taught_completed"),
        ({"taught_tokens": [10, -1]}, "taught_tokens"),
        ({"teaching_tokens": 2.5}, "teaching_tokens"),
        ({"leaked": "no"}, "leaked"),
        ({"baseline_logp": float("nan")}, "baseline_logp"),
        ({"taught_logp": "high"}, "taught_logp"),
    ],
)
def test_bad_rows_name_the_field(change: dict, field: str) -> None:
    bad = dict(row("p", [T, F], [T, T]), **change)
    with pytest.raises(InputError, match=f"outcome row 2: field '{field}'"):
        metrics.teacher_metrics([row("ok", [T], [T]), bad])


def test_empty_and_duplicate_rows_are_rejected() -> None:
    with pytest.raises(ValueError, match="no outcome rows"):
        metrics.teacher_metrics([])
    with pytest.raises(InputError, match="duplicate problem 'p'"):
        metrics.teacher_metrics([row("p", [T], [T]), row("p", [F], [F])])


def test_read_outcomes_validates_with_file_and_line(tmp_path) -> None:
    path = tmp_path / "eval_outcomes.jsonl"
    good = [row("a", [T], [F], teacher="none"), row("a", [T], [T], teacher="grpo")]
    path.write_text("\n".join(json.dumps(r) for r in good) + "\n\n", encoding="utf-8")
    assert metrics.read_outcomes(path) == good

    bad = dict(row("b", [T], [T]), leaked=None)
    path.write_text(json.dumps(good[0]) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"eval_outcomes.jsonl row 2: field 'leaked'"):
        metrics.read_outcomes(path)

    path.write_text(json.dumps(good[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(InputError, match="row 2: not valid JSON"):
        metrics.read_outcomes(path)

    path.write_text(json.dumps(good[0]) + "\n" + json.dumps(good[0]) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="row 2: field 'id': duplicate problem 'a' for teacher 'none'"):
        metrics.read_outcomes(path)


@pytest.mark.parametrize(
    ("a_taught", "b_taught", "difference", "wins", "losses"),
    [
        ([[True], [True], [False], [True]], [[False], [True], [False], [False]], 0.5, 2, 0),
        ([[False], [True], [False], [True]], [[True], [True], [True], [False]], -0.25, 1, 2),
        ([[True, False], [True, True]], [[False, False], [True, True]], 0.25, 1, 0),  # k=2: per-problem means
    ],
)
def test_paired_difference_on_hand_tables(a_taught, b_taught, difference, wins, losses) -> None:
    a = [row(f"p{i}", [False] * len(t), t, teacher="grpo") for i, t in enumerate(a_taught)]
    b = [row(f"p{i}", [False] * len(t), t, teacher="sft") for i, t in reversed(list(enumerate(b_taught)))]
    pair = metrics.paired_difference(a, b, bootstrap_samples=200, seed=0)  # matched by id, not by order
    assert pair["difference"] == pytest.approx(difference)
    assert (pair["wins"], pair["losses"], pair["n_problems"]) == (wins, losses, len(a_taught))
    assert pair["ci_low"] <= difference <= pair["ci_high"]


def test_paired_differences_only_for_evaluated_pairs_and_same_problems() -> None:
    grpo = [row("p1", [False], [True]), row("p2", [True], [True])]
    sft = [dict(r, teacher="sft", taught_correct=[False]) for r in grpo]
    report = metrics.evaluate_all({"none": grpo, "sft": sft, "grpo": grpo}, bootstrap_samples=50)
    assert list(report["paired"]) == ["grpo-sft"]
    assert report["paired"]["grpo-sft"]["difference"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="different problems"):
        metrics.paired_difference(grpo, sft[:1])
