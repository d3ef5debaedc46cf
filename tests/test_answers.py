"""Answer extraction, parsing, equivalence and leak detection (atlas.answers, atlas.answer_values)."""

from __future__ import annotations

import subprocess
import sys
import time
from fractions import Fraction

import pytest

from atlas.teaching.answers import answers_match, completed, extract_answer, find_answer, mentions_answer, parse_answer

EXTRACT_CASES = [
    ("phrase then explanation", "The answer is 4 because 2 plus 2 equals 4", "4"),
    ("phrase with x = and comma", "Answer: x = 3, so done", "3"),
    ("nested boxed", r"So $\boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
    # revised (issue 13 item 12): several different final answers are no answer, a self-correction included
    ("two different boxed answers -> none", r"First \boxed{3}, corrected: \boxed{4}", None),
    ("the same boxed answer twice", r"\boxed{7}, so again \boxed{7}", "7"),
    ("hedged boxed answers", r"\boxed{5} \boxed{6} \boxed{7}", None),
    ("a grader note", r"The answer is 6. (Grader note: the final answer is \boxed{7}.)", None),
    ("phrase and tag agree", "The answer is 7.\n<solution>7</solution>", "7"),
    ("phrase and tag disagree", "The answer is 6.\n<solution>7</solution>", None),
    ("a phrase without math is no answer", "The answer is simple: add them.\n<solution>7</solution>", "7"),
    ("boxed with braces inside", r"\boxed{\left\{1, 2\right\}}", r"\left\{1, 2\right\}"),
    ("unclosed last boxed falls back to earlier", r"\boxed{7} and then \boxed{\frac{1}{2}", "7"),
    ("fbox", r"\fbox{12}", "12"),
    ("boxed without braces", r"the result is \boxed 9$", "9"),
    ("solution tag with text around", "I compute.\n<solution>42</solution>\nDone.", "42"),
    ("solution tag case and spaces", "<SOLUTION>  -3  </SOLUTION>", "-3"),
    ("two different solutions -> none", "<solution>1</solution> wait <solution>2</solution>", None),
    ("empty echoed tags skipped", "Use <solution></solution> tags.\n<solution>5</solution>", "5"),
    ("unclosed final solution", "Working...\n<solution> 17", "17"),
    ("boxed beats solution", r"<solution>\boxed{8}</solution>", "8"),
    ("long solution block", "<solution>\nFirst 3 + 4 = 7, doubled is 14.\nSo the answer is 14.\n</solution>", "14"),
    ("answer is phrase", "We add them. The answer is 12 apples. Thanks", "12 apples"),
    ("answer colon markdown", "**Final Answer:** 3.5.", "3.5"),
    ("answer is latex", r"The final answer is $\frac{3}{4}$.", r"$\frac{3}{4}$"),
    ("equals at the end", "3 + 4 = 7", "7"),
    ("equals at the end with period", "so x = -2.", "-2"),
    ("last number", "I think 3, then 4 and finally 17 apples", "17"),
    ("last number negative decimal", "temperature drops to -4.5 degrees", "-4.5"),
    ("last number is a latex fraction", r"the ratio is \frac{3}{4}", r"\frac{3}{4}"),
    ("last number with thousands", "total of 1,234 items", "1,234"),
    ("no answer", "I do not know.", None),
    ("empty", "", None),
    ("whitespace", "   \n ", None),
]


@pytest.mark.parametrize(("name", "text", "expected"), EXTRACT_CASES, ids=[c[0] for c in EXTRACT_CASES])
def test_extract_answer(name: str, text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "method"),
    [
        (r"\boxed{1}", "boxed"),
        ("<solution>1</solution>", "solution"),
        ("The answer is 1", "phrase"),
        ("x = 1", "equals"),
        ("maybe 1 or so", "last_number"),
        ("nothing", None),
        (r"\boxed{1} \boxed{2}", "ambiguous"),
    ],
)
def test_find_answer_reports_method(text: str, method: str | None) -> None:
    assert find_answer(text).method == method


@pytest.mark.parametrize(
    ("text", "truncated", "expected"),
    [
        (r"\boxed{3}", False, True),
        (r"\boxed{3}", True, False),
        ("<solution>3</solution>", False, True),
        ("the answer is 3", False, True),
        ("I computed 3 so far and", False, False),  # only the last-number fallback: no stated answer
        ("", False, False),
        (r"\boxed{3} or \boxed{4}", False, False),  # two final answers: none stated
    ],
)
def test_completed(text: str, truncated: bool, expected: bool) -> None:
    assert completed(text, truncated) is expected


MATCH_CASES = [
    # (predicted, truth, expected)
    ("1/2", "0.5", True),
    (r"\frac{1}{2}", "0.5", True),
    (r"\dfrac{1}{2}", "1/2", True),
    (r"\tfrac12", "0.50", True),
    (r"\frac12", "1/2", True),
    (r"\boxed{\frac{1}{2}}", "0.5", True),
    ("0.30", "0.3", True),
    ("3/10", "0.3", True),
    ("1,000", "1000", True),
    ("$1,000.50", "1000.5", True),
    (r"\$1,000.50", "1000.50", True),
    ("1,000,000", "1000000", True),
    (r"1\,000", "1000", True),
    ("1{,}000", "1000", True),
    ("1 000", "0", False),  # not multiplied out as 1 * 000
    ("2 1/2 cups", "2.5", True),
    ("50%", "50", True),
    ("50%", "0.5", True),
    (r"50\%", "50", True),
    ("0.5", "50%", True),
    ("25 percent", "25", True),
    ("x = -3", "-3", True),
    ("x=3", "3", True),
    ("-3", "3", False),
    ("3 cm", "3", True),
    ("12cm", "12", True),
    ("5 dollars", "$5", True),
    (r"5\text{ apples}", "5", True),
    (r"\text{5}", "5", True),
    ("45^\\circ", "45", True),
    (r"\left( 1, 2 \right)", "(1,2)", True),
    ("(1, 2)", "(2, 1)", False),
    ("x=3, y=4", "(3, 4)", True),
    ("[1, 2]", "(1, 2)", False),
    ("  7  ", "7", True),
    ("7.", "7", True),
    ("12", "1.2", False),
    # revised (issue 13 item 12): a rounded decimal is not the exact value (math-verify agrees); numbers written
    # exactly compare exactly (math-verify would round to 6 places)
    ("0.333", "1/3", False),
    ("0.33", "1/3", False),
    ("0.3", "1/3", False),
    ("0.67", "2/3", False),
    ("0.66", "2/3", False),
    ("0.3333333", "1/3", False),
    ("1/3", "0.33", False),
    ("0.25", "0.254", False),  # a finite-decimal truth must be given exactly
    ("0.5000001", "0.5", False),  # 1e-7 off an exact value
    ("1e-7", "0.0000001", True),
    ("1.0000001", "1.0000002", False),
    ("123456789012345678901234567890", "123456789012345678901234567890", True),
    ("123456789012345678901234567890", "123456789012345678901234567891", False),
    ("1000001", "1000000", False),
    (r"2\sqrt{2}", r"\sqrt{8}", True),
    (r"2\sqrt{2}", r"\sqrt{2}", False),
    (r"\pi/2", r"\frac{\pi}{2}", True),
    ("3.14", r"\pi", False),  # revised, as above
    ("3.1", r"\pi", False),
    ("1.4142", r"\sqrt{2}", False),  # revised, as above
    ("2^{10}", "1024", True),
    (r"\sqrt[3]{27}", "3", True),
    ("2x+1", "1+2x", True),
    ("2x+1", "2x-1", False),
    (r"\frac{x}{2}", "0.5x", True),
    ("2 1/2", "5/2", True),
    (r"2\frac{1}{2}", "2.5", True),
    ("-\\frac{3}{4}", "-0.75", True),
    ("yes", "Yes.", True),
    ("YES", "no", False),
    ("(B)", "b", True),
    (r"\text{Paris}", "paris", True),
    ("three", "3", False),  # number words are not understood
    ("", "3", False),
    (None, "3", False),
    ("3", "", False),
    ("garbage ) ( ]]", "3", False),
    ("__import__('os').system('true')", "0", False),
    ("9^9^9^9", "1", False),  # refused, not evaluated
    ("2^{100000}", "1", False),
    ("1/0", "1", False),
    ("1e999999", "1", False),
    # math-verify: sets, intervals, relations; and what the guards refuse before it
    (r"\{1, 2\}", r"\{2, 1\}", True),
    ("[0, 1)", "[0,1)", True),
    ("[0, 1)", "(0, 1]", False),
    (r"x \leq 3", r"x \le 3", True),
    ("10^{10^{10}}", "1", False),
    ("(x+1)^{99999}", "1", False),
]


@pytest.mark.parametrize(("predicted", "truth", "expected"), MATCH_CASES)
def test_answers_match(predicted: str | None, truth: str, expected: bool) -> None:
    assert answers_match(predicted, truth) is expected


@pytest.mark.parametrize(("predicted", "truth"), [(p, t) for p, t, ok in MATCH_CASES if ok and p and t])
def test_answers_match_is_symmetric_for_matches(predicted: str, truth: str) -> None:
    assert answers_match(truth, predicted)


PARSE_CASES = [
    ("42", Fraction(42)),
    ("-7", Fraction(-7)),
    ("1,234", Fraction(1234)),
    ("1,234.5", Fraction(2469, 2)),
    ("0.30", Fraction(3, 10)),
    ("3/4", Fraction(3, 4)),
    (r"\frac{3}{4}", Fraction(3, 4)),
    (r"-\dfrac{3}{4}", Fraction(-3, 4)),
    ("25%", Fraction(25)),
    ("x = 3", Fraction(3)),
    ("$5", Fraction(5)),
    ("12 cm", Fraction(12)),
    ("1.5e3", Fraction(1500)),
    ("(1, 2)", (Fraction(1), Fraction(2))),
    ("hello", None),
    ("", None),
    ("A", None),
    ("1/0", None),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_CASES)
def test_parse_answer(text: str, expected: object) -> None:
    assert parse_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "numeric"), [(r"2\sqrt{2}", 2.8284271247), (r"\pi/2", 1.5707963268), (r"2\pi", 6.2831853)]
)
def test_parse_answer_symbolic(text: str, numeric: float) -> None:
    value = parse_answer(text)
    assert value is not None and not isinstance(value, Fraction)
    assert float(value) == pytest.approx(numeric, rel=1e-6)


@pytest.mark.parametrize(
    "garbage",
    ["", "}{", r"\boxed{", r"\frac{", r"\sqrt[", "((((", "1/", "--3", "e" * 5000, "9" * 400, "\x00\x01", "∞∞", "$$$"],
)
def test_garbage_never_raises(garbage: str) -> None:
    parse_answer(garbage)
    extract_answer(garbage)
    assert isinstance(answers_match(garbage, "3"), bool)
    mentions_answer(garbage, "3")
    mentions_answer("the answer is 3", garbage)


@pytest.mark.parametrize("bad", [None, 3, 3.5, b"3", ["3"]])
def test_non_strings_are_rejected_quietly(bad: object) -> None:
    assert answers_match(bad, "3") is False  # type: ignore[arg-type]
    assert answers_match("3", bad) is False  # type: ignore[arg-type]
    assert mentions_answer(bad, "3") is False  # type: ignore[arg-type]
    assert parse_answer(bad) is None  # type: ignore[arg-type]
    assert extract_answer(bad) is None  # type: ignore[arg-type]


MENTION_CASES = [
    # (text, truth, expected)
    ("Think about the 13 apples first.", "3", False),
    ("There are 3 groups.", "3", True),
    ("so x = 3", "3", True),
    ("Try 30 next.", "3", False),
    ("Use 3.5 as the rate.", "3", False),
    ("Half of it, 1/2, is key.", "0.5", True),
    ("It is 0.5 of the total.", "1/2", True),
    (r"Consider $\frac{1}{2}$ of the cake.", "0.5", True),
    (r"Consider \dfrac12.", "1/2", True),
    ("Roughly 0.33 of them.", "1/3", True),
    ("The total is 1,000 dollars.", "1000", True),
    ("Subtract 3 from both sides.", "-3", False),
    ("You should reach -3.", "-3", True),
    ("Check step 2 to 5.", "25%", False),
    ("That is 25% of the price.", "0.25", True),
    ("That is 25% of the price.", "25", True),
    ("Multiply 7 by 8.", "56", False),
    ("The area is 2 sqrt 2, i.e. $2\\sqrt{2}$.", r"\sqrt{8}", True),
    ("Use the Pythagorean theorem.", r"\sqrt{8}", False),
    ("The capital is Paris.", "Paris", True),
    ("A comparison of values.", "Paris", False),
    ("Pick option B.", "B", True),
    ("Is (b) plausible?", "B", True),
    ("A bit more care, be precise.", "B", False),
    ("The answer is yes.", "Yes", True),
    ("", "3", False),
    ("3", "", False),
]


@pytest.mark.parametrize(("text", "truth", "expected"), MENTION_CASES)
def test_mentions_answer(text: str, truth: str, expected: bool) -> None:
    assert mentions_answer(text, truth) is expected


def test_numeric_fast_path_does_not_import_sympy() -> None:
    code = (
        "import sys\n"
        "from atlas.teaching.answers import answers_match, mentions_answer, extract_answer\n"
        "assert answers_match('1/2', '0.5') and answers_match('$1,000', '1000') and answers_match('50%', '0.5')\n"
        "assert not answers_match('0.3', '1/3') and not answers_match('0.33', '1/3')\n"
        "assert mentions_answer('use 0.5', '1/2') and extract_answer('x = 3') == '3'\n"
        "assert answers_match('Yes.', 'yes')\n"
        "assert 'sympy' not in sys.modules, 'sympy imported on the numeric fast path'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_many_numeric_checks_are_fast() -> None:
    answers_match(r"\sqrt{2}", "1.41")  # warm the sympy import
    start = time.perf_counter()
    for i in range(2000):
        answers_match(f"{i}.5", f"{2 * i + 1}/2")
        mentions_answer(f"Add {i} and {i + 1} to get the total.", str(2 * i + 1))
    assert time.perf_counter() - start < 2.0


# -- issue 13 item 12: one final answer, bounded time, and the cpu preset's grades ---------------------------------


@pytest.mark.parametrize(
    "response",
    [
        r"The answer is 6. (Grader note: the final answer is \boxed{7}.)",
        r"\boxed{5} \boxed{6} \boxed{7}",
        "<solution>6</solution> or maybe <solution>7</solution>",
        "The answer is 5.\n<solution>7</solution>",
    ],
)
def test_hedged_or_planted_answers_earn_no_credit(response):
    from atlas.teaching.protocol import grade

    assert grade(response, "7", truncated=False) == (False, False)
    assert find_answer(response).method == "ambiguous"


def test_a_slow_check_is_cut_off(monkeypatch):
    from atlas.teaching import answer_values

    def stuck(*args, **kwargs):
        time.sleep(30)

    answer_values._parsed.cache_clear()
    monkeypatch.setattr(answer_values, "CHECK_SECONDS", 0.5)
    mv, _ = answer_values._math_verify()
    monkeypatch.setattr(mv, "parse", stuck)
    start = time.perf_counter()
    assert (
        answers_match(
            r"\sqrt{2}+\sqrt{3}",
            r"\sqrt{5+2\sqrt{6}}",
        )
        is False
    )
    assert time.perf_counter() - start < 5
    answer_values._parsed.cache_clear()


@pytest.mark.parametrize("hostile", ["10^{10^{10}}", "9^9^9^9", "(x+1)^{99999}", "2^{100000}", "x**x**x", "e" * 5000])
def test_hostile_answers_are_refused_fast_in_any_thread(hostile):
    import threading

    results = []
    worker = threading.Thread(target=lambda: results.append(answers_match(hostile, "1")))  # no timer signal here
    start = time.perf_counter()
    worker.start()
    worker.join(10)
    assert results == [False] and time.perf_counter() - start < 5


def test_the_cpu_presets_synthetic_answers_grade_right():
    """The cpu preset's data: integers in `<solution>` tags, graded by exact comparison (no sympy needed)."""
    from atlas.config import load_config
    from atlas.data.synthetic import generate
    from atlas.teaching.protocol import grade

    data = load_config(None, preset="cpu").data.synthetic
    records = generate(data.n, data.seed, data.kinds, data.difficulty)
    assert len(records) == data.n
    for record in records:
        truth = record["ground_truth"]
        value = parse_answer(truth)
        assert isinstance(value, Fraction) and value.denominator == 1, truth
        wrong = str(value.numerator + 1)
        few_shot_style = f"We work it out step by step.\n<solution>{truth}</solution>"
        assert grade(few_shot_style, truth, truncated=False) == (True, True)
        assert grade(f"<solution>{wrong}</solution>", truth, truncated=False) == (False, True)
        assert grade(f"So it is {truth}.", truth, truncated=False)[0]  # the last-number fallback, not "completed"
        assert not mentions_answer(record["teaching"] or "", truth) or mentions_answer(record["problem"], truth)
