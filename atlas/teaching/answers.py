r"""Final-answer extraction, answer checking and leak detection (used by the protocol, the rewards, the offline judge
and data validation).

One final answer per response (`find_answer`):
1. the explicit answers: every non-empty `\boxed{...}` (nested braces allowed), every non-empty `<solution>` block
   (an unclosed final tag runs to the end of the text; a long block is searched like a whole response) and every
   "the answer is X" / "answer: X" whose X holds a number or math;
2. when they all state the same answer (checked with `answers_match`), that is the answer (the last one as
   written); when they state different answers, the response has NO answer (method "ambiguous"): hedging with
   `\boxed{5} \boxed{6} \boxed{7}`, or "The answer is 6. (Grader note: the final answer is \boxed{7}.)", earns
   nothing against 7, and neither does a self-correction that leaves two answers standing;
3. with no explicit answer: "= X" ending the last line, else the last number in the text. These fallbacks never
   count as `completed` (an explicit, untruncated final answer).

Matching (`answers_match`), in order:
1. numbers written exactly (integers, decimals, thousands separators, fractions, mixed numbers, percentages, with
   units, currency or "x =" dropped) compare exactly, without sympy: "0.30" == "3/10" == "\frac{3}{10}",
   "25%" == 25 == 0.25, "2 1/2 cups" == 2.5, "1e-7" == "0.0000001"; "0.5000001" != "0.5" and a rounded decimal is
   not the exact value ("0.33" != 1/3, "3.14" != \pi);
2. the same text after normalisation (case, spacing, trailing period, `$`, `\text{}`, "(B)" == "b") matches;
3. anything else that is math goes to math-verify (`atlas.teaching.answer_values`): "2\sqrt{2}" == "\sqrt{8}",
   "\frac{x}{2}" == "0.5x", sets, intervals, tuples, relations; each check has a time limit and input guards;
4. otherwise, no match. Number words ("three") are not understood.

Leak detection (`mentions_answer`) is the project's own (math-verify has none): any number the text writes that
equals the truth (or the truth rounded to two or more places), a `$...$` or boxed segment that matches a
symbolic truth, or a text truth as a whole phrase.
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
_LEAD_VALUE = re.compile(
    r"(?:[a-z]\s*=\s*)?\$?\s*(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?%?)", re.IGNORECASE
)


class Extraction(NamedTuple):
    answer: str | None
    method: str | None  # "boxed", "solution", "phrase", "equals", "last_number", "ambiguous" or None


def _solutions(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of every non-empty `<solution>` block; an unclosed last tag runs to the end."""
    out = []
    for opening in _SOLUTION_OPEN.finditer(text):
        closing = _SOLUTION_CLOSE.search(text, opening.end())
        end = closing.start() if closing else len(text)
        content = text[opening.end() : end].strip()
        if content:
            out.append((opening.start(), end, content))
    return out


def _phrase_answer(raw: str) -> str:
    answer = re.split(r"\.(?=\s|$)", raw, maxsplit=1)[0].strip().strip("*").strip()
    if answer and values.last_boxed(answer):
        return values.last_boxed(answer) or answer
    if answer and not values.exact(answer) and not values.mathy(answer):  # "4 because 2 plus 2 equals 4"
        lead = _LEAD_VALUE.match(answer)
        answer = lead.group(1) if lead else answer
    return answer


def _phrases(text: str) -> list[tuple[int, str]]:
    found = []
    for match in _PHRASE.finditer(text):
        answer = _phrase_answer(match.group("ans"))
        if answer:
            found.append((match.start(), answer))
    return found


def _fallback(text: str) -> Extraction:
    lines = [line for line in text.splitlines() if line.strip()]
    equals = _EQUALS_END.search(lines[-1].strip()) if lines else None
    if equals and re.search(r"\d", equals.group("ans")):
        return Extraction(equals.group("ans").strip(), "equals")
    numbers = list(values.NUMBER_TOKEN.finditer(text)) + list(values.LATEX_FRAC_TOKEN.finditer(text))
    if not numbers:
        return Extraction(None, None)
    last = max(numbers, key=lambda m: (m.end(), m.re is values.LATEX_FRAC_TOKEN))
    return Extraction(last.group(0).strip(), "last_number")


def _solution_answer(content: str) -> str:
    short = len(content) <= _SHORT_SOLUTION and "\n" not in content and not _PHRASE.search(content)
    if short or values.exact(content) or values.boxed_all(content):
        return values.last_boxed(content) or content
    inner = _phrases(content)
    return inner[-1][1] if inner else (_fallback(content).answer or content)


def _states_math(answer: str) -> bool:
    return bool(re.search(r"\d", answer)) or values.mathy(answer)


def find_answer(text: str) -> Extraction:
    """The one final answer of a model output and how it was found (the rule in the module docstring)."""
    if not isinstance(text, str) or not text.strip():
        return Extraction(None, None)
    solutions = _solutions(text)
    inside = [(start, end) for start, end, _ in solutions]
    stated: list[tuple[int, str, str]] = []
    for pos, _, content in solutions:
        stated.append((pos, _solution_answer(content), "solution"))
    for pos, answer in values.boxed_spans(text):
        if not any(start <= pos < end for start, end in inside):  # a solution's own boxed answer is that solution's
            stated.append((pos, answer, "boxed"))
    for pos, answer in _phrases(text):
        if not any(start <= pos < end for start, end in inside) and _states_math(answer):
            stated.append((pos, answer, "phrase"))
    if not stated:
        return _fallback(text)
    stated.sort()
    final = stated[-1]
    if any(not _same(answer, final[1]) for _, answer, _ in stated[:-1]):
        return Extraction(None, "ambiguous")
    method = "boxed" if any(m == "boxed" for *_, m in stated) or values.boxed_all(final[1]) else final[2]
    return Extraction(final[1], method)


def _same(a: str, b: str) -> bool:
    return a.strip() == b.strip() or answers_match(a, b)


def extract_answer(text: str) -> str | None:
    """The raw final answer string (stripped), or None when the text holds no answer (or several)."""
    return find_answer(text).answer


def completed(text: str, truncated: bool) -> bool:
    """The output stated one explicit final answer (boxed, solution tag or "the answer is") and was not cut off.

    Stricter than `extract_answer(text) is not None`, which the last-number fallback makes true for nearly any text.
    """
    return not truncated and find_answer(text).method in EXPLICIT_METHODS


def parse_answer(text: str) -> object | None:
    """A comparable value: a `Fraction` for an exact number (as written: "25%" -> 25), a tuple of them for "(a, b)",
    math-verify's sympy value for other math; None when the text is not a math answer."""
    if not isinstance(text, str):
        return None
    found = values.exact(text)
    if found:
        first = found[0]
        return tuple(first.items) if isinstance(first, values.Seq) else first
    return values.math_value(text)


def normalize_text(text: str) -> str:
    """Case-, spacing- and markup-insensitive form of a non-numeric answer ("Yes." -> "yes", "(B)" -> "b")."""
    s = re.sub(r"\s+", " ", values.clean(text).lower()).strip(" .\"'")
    return re.sub(r"^\((\w)\)$", r"\1", s)


def answers_match(predicted: str | None, truth: str) -> bool:
    """Whether a predicted answer is the ground truth (the rule in the module docstring). None, empty or non-string
    input gives False; it never raises."""
    if not isinstance(predicted, str) or not isinstance(truth, str) or not predicted.strip() or not truth.strip():
        return False
    try:
        pred_exact, truth_exact = values.exact(predicted), values.exact(truth)
        if pred_exact and truth_exact:
            return any(values.exact_equal(p, t) for p in pred_exact for t in truth_exact)
        if normalize_text(predicted) == normalize_text(truth) != "":
            return True
        return values.math_equal(predicted, truth)
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


def _mentions_number(text: str, truths: tuple) -> bool:
    fractions = list(values.LATEX_FRAC_TOKEN.finditer(text))
    numbers = fractions + list(values.NUMBER_TOKEN.finditer(values.LATEX_FRAC_TOKEN.sub(" ", text)))
    plain = [t for t in truths if isinstance(t, Fraction)]
    for match in numbers:
        written = match.group(0)
        if any(values.exact_equal(v, t) for v in values.exact(written) for t in truths):
            return True
        if any(values.rounds_to(written, t) for t in plain):
            return True
    return False


def mentions_answer(text: str, truth: str) -> bool:
    r"""True when `text` states the answer `truth` (leak detection for guidance); never raises.

    Numeric truths: any number written in the text that equals the truth, or is it rounded to two or more places
    ("13" is not a mention of 3; "1/2", "0.5" and "\frac{1}{2}" all mention 0.5; "0.33" mentions 1/3; "-3" is not
    mentioned by "subtract 3"). Symbolic truths: a `$...$`/`\boxed{}` segment that matches, or the truth written
    out. Text truths: the normalised truth as a whole phrase; a one-letter truth (a multiple-choice option) only as
    "(b)", "option b", "choice b" or "answer b". A number that the question itself contains counts too; callers can
    check `mentions_answer(question, truth)`.
    """
    if not isinstance(text, str) or not isinstance(truth, str) or not text.strip() or not truth.strip():
        return False
    try:
        truths = values.exact(truth)
        if truths:
            return _mentions_number(text, truths)
        if values.mathy(truth):
            segments = ["".join(pair) for pair in re.findall(r"\$([^$]+)\$|\\\((.+?)\\\)", text)]
            segments += values.boxed_all(text)
            if any(answers_match(s, truth) for s in segments if s.strip()):
                return True
            compact = re.sub(r"\s+", "", truth.strip().strip("$"))
            return len(compact) > 1 and compact in re.sub(r"\s+", "", text)
        return _mentions_phrase(text, truth)
    except Exception as exc:  # noqa: BLE001 - leak detection must not crash a training step
        logger.debug("mentions_answer failed on %r: %s", truth[:80], exc)
        return False
