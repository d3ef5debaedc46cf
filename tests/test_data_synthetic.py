"""The synthetic teaching-data generator: determinism, verifiable answers, guidance that never states the answer."""

from __future__ import annotations

import re
import statistics
from fractions import Fraction

import pytest

from atlas.config import ConfigError
from atlas.data.schema import RECORD_KEYS, loose_problem_key
from atlas.data.synthetic import KINDS, generate
from atlas.teaching.answers import mentions_answer, parse_answer

ALL = list(KINDS)


def _numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", text)]


def _answer_from_teaching(kind: str, teaching: str, problem: str) -> Fraction:
    """Recompute the answer from what the guidance says to do: the guidance and the ground truth must agree."""
    n = _numbers(teaching)
    if kind == "mul":  # the plan names no numbers: groups times the number in each group
        a, b = _numbers(problem)[:2]
        return Fraction(a * b)
    if kind in ("add", "sub", "two_step", "multi_step", "units"):
        expression = teaching.rsplit("is", 1)[-1] if "calculation is" in teaching else teaching.rsplit("so", 1)[-1]
        expression = expression.replace("×", "*").strip(" .")
        assert re.fullmatch(r"[\d\s+\-*]+", expression), expression
        return Fraction(eval(expression))  # noqa: S307 - digits and + - * only (checked above)
    if kind == "rate":  # divide T by k, then multiply by m
        return Fraction(n[0], n[1]) * n[2]
    if kind == "percent":  # "p% means p out of every 100, so compute B × p ÷ 100"
        return Fraction(n[-3] * n[-2], n[-1])
    if kind == "fencepost":  # divide L by s, then add 1
        return Fraction(n[0], n[1]) + n[2]
    raise AssertionError(kind)


def test_same_seed_same_records_and_other_seed_differs():
    first = generate(60, seed=7, kinds=ALL, difficulty=0.5)
    assert first == generate(60, seed=7, kinds=ALL, difficulty=0.5)
    assert [r["problem"] for r in first] != [r["problem"] for r in generate(60, seed=8, kinds=ALL, difficulty=0.5)]


def test_a_larger_n_extends_a_smaller_set_without_changing_it():
    small, large = generate(30, 3, ALL, 0.4), generate(90, 3, ALL, 0.4)
    assert large[:30] == small


def test_records_are_normalized_distinct_and_cover_every_kind():
    records = generate(180, 0, ALL, 0.5)
    assert all(list(r) == list(RECORD_KEYS) for r in records)
    assert {r["kind"] for r in records} == set(KINDS)
    assert all(r["source"] == "synthetic" and r["split"] is None for r in records)
    assert len({r["id"] for r in records}) == len(records)
    assert len({loose_problem_key(r["problem"]) for r in records}) == len(records)
    assert all(r["approach"] and r["diagnosis"] and r["teaching"] for r in records)


@pytest.mark.parametrize("difficulty", [0.0, 0.5, 1.0])
def test_ground_truth_is_verifiable_and_never_copied_or_leaked(difficulty):
    for record in generate(135, 11, ALL, difficulty):
        truth = record["ground_truth"]
        assert parse_answer(truth) == Fraction(int(truth)) and int(truth) > 0
        assert _answer_from_teaching(record["kind"], record["teaching"], record["problem"]) == int(truth), record
        assert int(truth) not in _numbers(record["problem"]), record
        for field in ("approach", "diagnosis", "teaching"):
            assert not mentions_answer(record[field], truth), (field, record)
        assert len(re.findall(r"[.!?](\s|$)", record["teaching"])) <= 2
        # numbers are copied from the question (plus fixed facts: +1, per 100, unit factors), never computed
        assert set(_numbers(record["teaching"])) <= set(_numbers(record["problem"])) | {1, 60, 100, 1000}, record


def test_student_approach_is_sometimes_right_and_sometimes_mistaken():
    records = generate(200, 1, ALL, 0.5)
    confirmed = sum(r["diagnosis"].startswith("The plan is right") for r in records)
    assert 0.2 * len(records) < confirmed < 0.8 * len(records)


def test_difficulty_scales_numbers_and_steps():
    def mean_answer(d: float) -> float:
        return statistics.fmean(int(r["ground_truth"]) for r in generate(120, 2, ["add", "mul", "rate"], d))

    assert mean_answer(1.0) > 2 * mean_answer(0.0)
    steps = [max(r["teaching"].count("+") + r["teaching"].count(" - "), 1) for r in generate(5, 0, ["multi_step"], 1.0)]
    easy = [r["teaching"].count("+") + r["teaching"].count(" - ") for r in generate(5, 0, ["multi_step"], 0.0)]
    assert min(steps) == 4 and max(easy) == 2


def test_surface_forms_vary():
    records = generate(40, 0, ["add"], 0.5)
    assert len({r["problem"].split()[0] for r in records}) >= 8  # names
    assert len({r["problem"].split()[3].rstrip(".") for r in records}) >= 5  # objects


@pytest.mark.parametrize(
    ("kinds", "difficulty", "message"),
    [(["add", "calculus"], 0.5, "calculus"), ([], 0.5, "kinds"), (["add"], 1.5, "difficulty")],
)
def test_bad_generator_settings_are_config_errors(kinds, difficulty, message):
    with pytest.raises(ConfigError, match=message):
        generate(4, 0, kinds, difficulty)
