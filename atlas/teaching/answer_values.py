r"""The values behind written answers, for `atlas.teaching.answers`: exact numbers here, everything else through
math-verify (the verifier TRL, open-r1 and Big-Math use), with guards and a time limit.

- `exact(text)`: numbers written exactly ("42", "-0.30", "1,234", "3/4", "\frac{3}{4}", "2 1/2", "25%", "12 cm",
  "$5", "x = 3", "1e-7", a tuple "(1, 2)") as `Fraction`s, without sympy. Two exact numbers compare exactly: this
  is the one place the project does not defer to math-verify, which rounds floats to 6 places ("0.5000001" would
  equal "0.5") and reads "1e-7" as 1*e - 7.
- `mathy(text)`: whether a text is worth handing to math-verify: math symbols, digits or LaTeX, no words that are
  not math names, no exponent that could take forever ("9^9^9", "2^{100000}", "10^{10^{10}}" are refused here,
  because math-verify's own time limit works only in the main thread);
- `math_equal(pred, truth)` / `math_value(text)`: math-verify's `parse` + `verify` (LaTeX and plain expressions),
  under a deadline of `CHECK_SECONDS` per check in the main thread (a timer signal; math-verify's own timer takes
  whole seconds and raises in other threads). A check that runs out of time is not a match.

math-verify (and so sympy) is imported on first use only: plain numbers never pay for it.
"""

from __future__ import annotations

import functools
import logging
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

logger = logging.getLogger(__name__)

CHECK_SECONDS = 2.0
MAX_CHARS = 300
MAX_EXPONENT = 1000
_MATH_NAMES = frozenset({"sqrt", "pi", "log", "ln", "sin", "cos", "tan", "exp", "infty", "frac", "dfrac", "tfrac",
                         "cdot", "times", "div", "le", "ge", "leq", "geq", "neq", "cup", "cap", "in", "emptyset",
                         "left", "right", "mathbb", "circ", "pm", "mp", "text", "mathrm", "approx"})  # fmt: skip

_NUM = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
NUMBER_TOKEN = re.compile(rf"(?<![\w.])-?{_NUM}(?:\s*/\s*{_NUM})?(?:[eE][-+]?\d+)?%?(?![\w.]?\d)")
LATEX_FRAC_TOKEN = re.compile(r"-?\\[dt]?frac\s*(?:\{\s*(-?[\d.]+)\s*\}\s*\{\s*(-?[\d.]+)\s*\}|(\d)(\d))")
_DECIMAL = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.(\d+))?(?:[eE]([-+]?\d+))?")
_FRACTION = re.compile(rf"([-+]?{_NUM})\s*/\s*({_NUM})|([-+]?)\\frac\{{\s*([-+]?[\d.]+)\s*\}}\{{\s*([\d.]+)\s*\}}")
_MIXED = re.compile(r"([-+]?)(\d+)\s+(\d+)\s*/\s*(\d+)|([-+]?)(\d+)\s*\\frac\{(\d+)\}\{(\d+)\}")
_UNIT_SUFFIX = re.compile(r"(?P<num>.*?[\d}])\s*(?P<unit>[a-zA-Z][a-zA-Z\s./]*(?:\^\s*\{?\d\}?)?)")
_THOUSANDS_LEAD = re.compile(r"[-+$]?\d{1,3}(?:,\d{3})+(?:\.\d+)?[^,]*")
_BOXED = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])(\s*)")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_SPACING = re.compile(r"\\[,;:! ]|\\q?quad(?![a-zA-Z])|\\displaystyle|~")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree(?![a-zA-Z])")
_RELATION = re.compile(r"(?<![<>!=\\])=(?!=)")
_LATEX_PLAIN = (("\\%", "%"), ("\\$", "$"), ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\(", ""), ("\\)", ""))
_EXPONENT = re.compile(r"\^\s*(\{(?:[^{}]|\{[^{}]*\})*\}|\(?[^\s{}()]+\)?)")


@dataclass(frozen=True)
class Seq:
    """A bare or bracketed sequence of exact numbers: "(1, 2)", "1, 2"."""

    brackets: str
    items: tuple[Fraction, ...]


# -- text --------------------------------------------------------------------------------------------------------


def _closing_braces(text: str) -> dict[int, int]:
    """Index of each '{' -> index of its matching '}' (escaped braces ignored), in one linear pass."""
    pairs, stack, i = {}, [], 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == "{":
            stack.append(i)
        elif text[i] == "}" and stack:
            pairs[stack.pop()] = i
        i += 1
    return pairs


def boxed_all(text: str) -> list[str]:
    """The contents of every complete, non-empty `\\boxed{...}` / `\\fbox{...}` / `\\boxed 5`, in order."""
    return [content for _, content in boxed_spans(text)]


def boxed_spans(text: str) -> list[tuple[int, str]]:
    """(position, content) of every complete, non-empty boxed answer, in order."""
    if "\\boxed" not in text and "\\fbox" not in text:
        return []
    pairs = _closing_braces(text)
    out = []
    for match in _BOXED.finditer(text):
        end = match.end()
        if text[end : end + 1] == "{":
            close = pairs.get(end)
            inner = text[end + 1 : close] if close is not None else None
        else:  # "\\boxed 5"
            token = re.match(r"[^\s$\\}]+", text[end:]) if match.group(1) else None
            inner = token.group(0) if token else None
        if inner is not None and inner.strip():
            out.append((match.start(), inner.strip()))
    return out


def last_boxed(text: str) -> str | None:
    found = boxed_all(text)
    return found[-1] if found else None


def _trim(s: str) -> str:
    return s.strip().rstrip(".").strip().strip("$").strip()


def plain_text(text: str) -> str:
    """`\\text{...}`-style wrappers unwrapped and `$` math delimiters blanked (for word search and cleaning)."""
    for _ in range(3):
        text = _TEXT_CMD.sub(r" \1 ", text)
    return text.replace("$", " ")


def clean(text: str) -> str:
    """Unwrap boxed, text and `$`; drop spacing and degree marks; normalise dfrac/tfrac, `\\frac12` and `1\\,000`."""
    s = plain_text(last_boxed(text) or text)
    s = re.sub(r"(\d)(?:\\,|\{,\})(?=\d{3}(?!\d))", r"\1,", s)
    s = _DEGREES.sub("", _SPACING.sub(" ", s)).replace("\\[", "").replace("\\]", "")
    for old, new in _LATEX_PLAIN:
        s = s.replace(old, new)
    return _trim(re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s))


# -- exact numbers -------------------------------------------------------------------------------------------------


def _number(s: str) -> Fraction | None:
    """Integers, decimals, fractions and mixed numbers, as written."""
    if (m := _DECIMAL.fullmatch(s)) and re.search(r"\d", s):
        if m.group(2) and abs(int(m.group(2))) > 400:
            return None
        try:
            return Fraction(Decimal(s.replace(",", "")))
        except (InvalidOperation, ValueError, OverflowError):
            return None
    if m := _MIXED.fullmatch(s):
        sign, whole, num, den = m.group(1, 2, 3, 4) if m.group(2) else m.group(5, 6, 7, 8)
        if not 0 <= int(num) < int(den):
            return None
        value = int(whole) + Fraction(int(num), int(den))
        return -value if sign == "-" else value
    if m := _FRACTION.fullmatch(s):
        num, den = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(5))
        sign = "" if m.group(1) else m.group(3)
        try:
            value = Fraction(Decimal(num.replace(",", ""))) / Fraction(Decimal(den.replace(",", "")))
        except (InvalidOperation, ZeroDivisionError, ValueError):
            return None
        return -value if sign == "-" else value
    return None


def _single(s: str) -> tuple[Fraction, ...]:
    """The value of one written number (two for a percentage: as written, and over 100); () when not one."""
    percent = s.endswith("%") or s.lower().endswith(" percent")
    s = re.sub(r"\s*(%|percent)$", "", s, flags=re.IGNORECASE) if percent else s
    s = re.sub(r"^([-+]?)\s*(?:\$|€|£|usd\b)\s*", r"\1", s, flags=re.IGNORECASE).strip()
    unit = _UNIT_SUFFIX.fullmatch(s)
    if unit and unit["unit"].split()[0].split("^")[0] not in _MATH_NAMES and not re.fullmatch(r"[a-z]", unit["unit"]):
        s = unit["num"].strip()  # "12 cm", "5 dollars", "3 m"; but "2x" stays an expression
    value = _number(s)
    if value is None:
        return ()
    return (value, value / 100) if percent else (value,)


def right_hand_side(s: str) -> str:
    """ "x = 3" -> "3"; a list of equations ("x=3, y=4") is left whole."""
    pieces = _RELATION.split(s)
    if len(pieces) == 2 and re.fullmatch(r"\s*[a-zA-Z]\w*\s*", pieces[0]):
        return _trim(pieces[1])
    return s


def _sequence(s: str) -> tuple[str, list[str]] | None:
    brackets, inner = "", s
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]":
        brackets, inner = s[0] + s[-1], s[1:-1]
    elif _THOUSANDS_LEAD.fullmatch(s):
        return None
    parts = [p.strip() for p in inner.split(",")]
    return (brackets, parts) if len(parts) > 1 and all(parts) else None


@functools.lru_cache(maxsize=8192)
def exact(text: str) -> tuple[Any, ...]:
    """The exact values a written answer can mean (two for a percentage), most literal first: `Fraction`s, or one
    `Seq` of them; () when the answer is not written as exact numbers."""
    s = right_hand_side(clean(text)) if isinstance(text, str) else ""
    if not s or len(s) > MAX_CHARS:
        return ()
    sequence = _sequence(s)
    if sequence is None:
        return _single(s)
    items = [_single(part) for part in sequence[1]]
    return (Seq(sequence[0], tuple(i[0] for i in items)),) if all(items) else ()


def exact_equal(a: Any, b: Any) -> bool:
    if isinstance(a, Seq) or isinstance(b, Seq):
        return (
            isinstance(a, Seq)
            and isinstance(b, Seq)
            and a.items == b.items
            and not (a.brackets and b.brackets and a.brackets != b.brackets)
        )
    return a == b


def rounds_to(decimal_text: str, value: Fraction) -> bool:
    """`decimal_text` ("0.33") is `value` (1/3) rounded to its >= 2 written places, and `value` has no finite
    decimal expansion (a leak written approximately is still a leak)."""
    m = re.fullmatch(r"-?\d*\.(\d{2,30})", decimal_text.strip())
    if not m or pow(10, value.denominator.bit_length(), value.denominator) == 0:
        return False
    return abs(Fraction(decimal_text.strip()) - value) <= Fraction(1, 2 * 10 ** len(m.group(1)))


# -- everything else: math-verify ---------------------------------------------------------------------------------


def _exponent_ok(s: str) -> bool:
    for match in _EXPONENT.finditer(s):
        exponent = match.group(1).strip("{}() ")
        if "^" in exponent or "**" in exponent:
            return False  # a power inside an exponent (9^9^9, 10^{10^{10}})
        digits = re.fullmatch(r"-?\d+", exponent)
        if digits and abs(int(exponent)) > MAX_EXPONENT:
            return False
    return "**" not in s


def mathy(text: str) -> bool:
    """Whether `text` (an extracted answer) is a math expression worth parsing: short, with a digit, an operator
    or LaTeX, no word that is not a math name, no exponent that could take forever."""
    s = clean(text) if isinstance(text, str) else ""
    if not s or len(s) > MAX_CHARS or not re.search(r"[\d\\^=<>+*/()\[\]{}|-]|π|√|∞", s):
        return False
    words = re.findall(r"(?<!\\)\b[a-zA-Z]{2,}\b", s)
    if any(w.lower() not in _MATH_NAMES for w in words):
        return False
    if re.search(r"\d\s+\d", s) and not _MIXED.fullmatch(s):  # "1 000": not a number math-verify should multiply
        return False
    return _exponent_ok(s)


class _OutOfTime(BaseException):
    """Raised by the timer signal; a BaseException, so that no library's `except Exception` swallows it."""


@contextmanager
def deadline(seconds: float = CHECK_SECONDS) -> Iterator[None]:
    """Interrupt the block after `seconds` (main thread only; elsewhere the guards of `mathy` are the bound)."""
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def expire(signum, frame):
        raise _OutOfTime()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@functools.lru_cache(maxsize=1)
def _math_verify() -> Any:
    import math_verify
    from math_verify import grader, parser

    parser.TIMEOUT_WARNING_SHOWN = grader.TIMEOUT_WARNING_SHOWN = True  # we bound the time ourselves
    config = [math_verify.LatexExtractionConfig(), math_verify.ExprExtractionConfig()]
    return math_verify, config


@functools.lru_cache(maxsize=8192)
def _parsed(text: str) -> tuple[Any, ...]:
    mv, config = _math_verify()
    return tuple(mv.parse(f"${text}$", config, parsing_timeout=None))


def math_value(text: str, seconds: float = CHECK_SECONDS) -> Any | None:
    """math-verify's value of an answer (a sympy object), or None when it is not math or runs out of time."""
    if not mathy(text):
        return None
    try:
        with deadline(seconds):
            parsed = _parsed(clean(text))
    except _OutOfTime:
        logger.warning("parsing %r took more than %.1f s: not a math answer", text[:80], seconds)
        return None
    except Exception as exc:  # noqa: BLE001 - unparseable is the answer
        logger.debug("math-verify could not parse %r: %s", text[:80], exc)
        return None
    value = next((p for p in parsed if not isinstance(p, str)), None)
    if value is not None and hasattr(value, "has"):
        import sympy

        if value.has(sympy.zoo, sympy.nan):  # 1/0 is not an answer
            return None
    return value


def math_equal(pred: str, truth: str, seconds: float = CHECK_SECONDS) -> bool:
    """math-verify's verdict on two answers (both must be `mathy`); False when it runs out of time."""
    if not (mathy(pred) and mathy(truth)):
        return False
    try:
        with deadline(seconds):
            mv, _ = _math_verify()
            gold, answer = _parsed(clean(truth)), _parsed(clean(pred))
            return bool(gold and answer and mv.verify(list(gold), list(answer), timeout_seconds=None))
    except _OutOfTime:
        logger.warning("comparing %r with %r took more than %.1f s: not a match", pred[:80], truth[:80], seconds)
        return False
    except Exception as exc:  # noqa: BLE001 - a comparison math-verify cannot decide is not a match
        logger.debug("math-verify could not compare %r and %r: %s", pred[:80], truth[:80], exc)
        return False
