r"""Final-answer extraction and mathematical answer checking (used by the protocol, the rewards and data validation).

Extraction order: the last `\boxed{...}` (nested braces allowed), else the last non-empty `<solution>` block (an
unclosed final tag runs to the end of the text), else "answer is / answer: X", else "= X" ending the last line,
else the last number in the text.

Matching rule (`answers_match`), in order:
1. exact rationals (integers, decimals, thousands separators, fractions, mixed numbers, percentages) compare exactly:
   "0.30" == "3/10" == "\frac{3}{10}"; "1000001" != "1000000"; "0.5000001" != "0.5";
2. a decimal written with d >= 2 places also matches a value that has no finite decimal expansion (1/3, pi, sqrt 2)
   when it is that value correctly rounded to d places: "0.33" and "0.333" match 1/3, "0.3" and "0.66" (for 2/3) do
   not; "3.14" matches "\pi". Either side may be the rounded one. A finite-decimal truth must be given exactly;
3. irrational or symbolic values (sympy; written decimals stay exact rationals) compare numerically to 1e-9 relative
   or 1e-12 absolute: "2\sqrt{2}" == "\sqrt{8}"; expressions in variables are compared at three fixed points;
4. "25%" matches both 25 and 0.25; units, currency and "x =" prefixes are dropped ("12 cm", "$5", "x = -3");
   "2 1/2" and "2\frac{1}{2}" are mixed numbers (5/2); "(1, 2)" is an ordered tuple;
5. whatever does not parse as math compares as normalised text (case, spacing, trailing period, `$`, `\text{}`).
Number words ("three") are not understood. Parsing and comparison live in `atlas.teaching.answer_values`; plain
numbers never import sympy.
"""

from __future__ import annotations

import logging
import re
from fractions import Fraction
from typing import NamedTuple

from atlas.teaching import answer_values as values

logger = logging.getLogger(__name__)

EXPLICIT_METHODS = frozenset({"boxed", "solution", "phrase"})
_SHORT_SOLUTION = 40
_SOLUTION_OPEN = re.compile(r"<solution>", re.IGNORECASE)
_SOLUTION_CLOSE = re.compile(r"</solution>", re.IGNORECASE)
_PHRASE = re.compile(r"\banswer\b[\s*]*(?:is\b|:|=)[\s*:=]*(?P<ans>[^\n]*)", re.IGNORECASE)
_EQUALS_END = re.compile(r"=\s*(?P<ans>[^=\n]{1,40}?)\s*\.?\s*$")


class Extraction(NamedTuple):
    answer: str | None
    method: str | None  # "boxed", "solution", "phrase", "equals", "last_number" or None


def _last_solution(text: str) -> str | None:
    for opening in reversed(list(_SOLUTION_OPEN.finditer(text))):
        closing = _SOLUTION_CLOSE.search(text, opening.end())
        content = text[opening.end() : closing.start() if closing else len(text)].strip()
        if content:
            return content
    return None


def _fallback(text: str) -> Extraction:
    for match in reversed(list(_PHRASE.finditer(text))):
        answer = re.split(r"\.(?=\s|$)", match.group("ans"), maxsplit=1)[0].strip().strip("*").strip()
        if answer and parse_answer(answer) is None:  # "4 because 2 plus 2 equals 4": keep the leading value
            lead = re.match(
                r"(?:[a-z]\s*=\s*)?\$?\s*(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?%?)",
                answer,
                re.IGNORECASE,
            )
            answer = lead.group(1) if lead else answer
        if answer:
            return Extraction(answer, "phrase")
    lines = [line for line in text.splitlines() if line.strip()]
    equals = _EQUALS_END.search(lines[-1].strip()) if lines else None
    if equals and re.search(r"\d", equals.group("ans")):
        return Extraction(equals.group("ans").strip(), "equals")
    numbers = list(values.NUMBER_TOKEN.finditer(text)) + list(values.LATEX_FRAC_TOKEN.finditer(text))
    if not numbers:
        return Extraction(None, None)
    last = max(numbers, key=lambda m: (m.end(), m.re is values.LATEX_FRAC_TOKEN))
    return Extraction(last.group(0).strip(), "last_number")


def find_answer(text: str) -> Extraction:
    """The final answer of a model output and how it was found (order in the module docstring)."""
    if not isinstance(text, str) or not text.strip():
        return Extraction(None, None)
    boxed = values.last_boxed(text)
    if boxed is not None:
        return Extraction(boxed, "boxed")
    solution = _last_solution(text)
    if solution is None:
        return _fallback(text)
    short = len(solution) <= _SHORT_SOLUTION and "\n" not in solution and not _PHRASE.search(solution)
    if short or values.candidates(solution):
        return Extraction(solution, "solution")
    return Extraction(_fallback(solution).answer or solution, "solution")


def extract_answer(text: str) -> str | None:
    """The raw final answer string (stripped), or None when the text holds no answer at all."""
    return find_answer(text).answer


def completed(text: str, truncated: bool) -> bool:
    """The output stated an explicit final answer (boxed, solution tag or "the answer is") and was not cut off.

    Stricter than `extract_answer(text) is not None`, which the last-number fallback makes true for nearly any text.
    """
    return not truncated and find_answer(text).method in EXPLICIT_METHODS


def parse_answer(text: str) -> object | None:
    """A comparable value: Fraction for exact numbers, a sympy expression for symbolic ones, a tuple for "(a, b)".

    A percentage gives the number as written ("25%" -> 25). None when the text is not a math answer.
    """
    value = (values.candidates(text) or (None,))[0] if isinstance(text, str) else None
    return tuple(i.value for i in value.items) if isinstance(value, values.Seq) else getattr(value, "value", None)


def normalize_text(text: str) -> str:
    """Case-, spacing- and markup-insensitive form of a non-numeric answer ("Yes." -> "yes", "(B)" -> "b")."""
    s = re.sub(r"\s+", " ", values.clean(text).lower()).strip(" .\"'")
    return re.sub(r"^\((\w)\)$", r"\1", s)


def answers_match(predicted: str | None, truth: str) -> bool:
    """Mathematical equivalence of a predicted answer and the ground truth (rules in the module docstring).

    None, empty or non-string input gives False; it never raises.
    """
    if not isinstance(predicted, str) or not isinstance(truth, str) or not predicted.strip() or not truth.strip():
        return False
    try:
        pred_values, truth_values = values.candidates(predicted), values.candidates(truth)
        if pred_values and truth_values:
            return any(values.values_match(p, t) for p in pred_values for t in truth_values)
        return normalize_text(predicted) == normalize_text(truth) != ""
    except Exception as exc:  # noqa: BLE001 - garbage in, False out
        logger.debug("answers_match(%r, %r) failed: %s", predicted[:80], truth[:80], exc)
        return False


def _mentions_phrase(text: str, truth: str) -> bool:
    phrase, words = normalize_text(truth), re.sub(r"\s+", " ", values.plain_text(text).lower())
    if len(phrase) == 1:  # a multiple-choice letter: only an explicit "(b)" / "option b" counts
        pattern = rf"\({re.escape(phrase)}\)|\b(?:option|choice|answer)\s*:?\s*{re.escape(phrase)}\b"
    else:
        pattern = rf"(?<!\w){re.escape(phrase)}(?!\w)"
    return bool(phrase) and re.search(pattern, words) is not None


def _mentions_value(text: str, truth: str, truth_values: tuple[object, ...]) -> bool:
    fractions = list(values.LATEX_FRAC_TOKEN.finditer(text))
    numbers = fractions + list(values.NUMBER_TOKEN.finditer(values.LATEX_FRAC_TOKEN.sub(" ", text)))
    for value in (v for m in numbers for v in values.candidates(m.group(0))):
        if any(values.values_match(value, t) for t in truth_values):
            return True
    if all(isinstance(t, values.Num) and isinstance(t.value, Fraction) for t in truth_values):
        return False  # a plain number can only be stated as a number
    segments = ["".join(pair) for pair in re.findall(r"\$([^$]+)\$|\\\((.+?)\\\)", text)]
    if any(answers_match(s, truth) for s in [*segments, values.last_boxed(text) or ""] if s.strip()):
        return True
    compact = re.sub(r"\s+", "", truth.strip().strip("$"))
    return len(compact) > 1 and compact in re.sub(r"\s+", "", text)


def mentions_answer(text: str, truth: str) -> bool:
    r"""True when `text` states the answer `truth` (leak detection for guidance); never raises.

    Numeric truths: any number written in the text that matches the truth ("13" is not a mention of 3; "1/2",
    "0.5" and "\frac{1}{2}" all mention 0.5; "-3" is not mentioned by "subtract 3"). Symbolic truths: also a
    `$...$`/`\boxed{}` segment that matches, or the truth written out. Text truths: the normalised truth as a whole
    phrase; a one-letter truth (a multiple-choice option) only as "(b)", "option b", "choice b" or "answer b".
    A number that the question itself contains counts too; callers can check `mentions_answer(question, truth)`.
    """
    if not isinstance(text, str) or not isinstance(truth, str) or not text.strip() or not truth.strip():
        return False
    try:
        truth_values = values.candidates(truth)
        return _mentions_value(text, truth, truth_values) if truth_values else _mentions_phrase(text, truth)
    except Exception as exc:  # noqa: BLE001 - leak detection must not crash a training step
        logger.debug("mentions_answer failed on %r: %s", truth[:80], exc)
        return False
