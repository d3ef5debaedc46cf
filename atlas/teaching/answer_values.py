r"""Turning written answers into comparable values and comparing them (the engine behind `atlas.teaching.answers`).

`candidates(text)` parses an answer ("0.30", "1,234", "3/4", "\frac{3}{4}", "25%", "12 cm", "x = -3", "2\sqrt{2}",
"(1, 2)") into exact `Fraction`s where possible and sympy expressions otherwise; `values_match(a, b)` applies the
matching rule documented in `atlas.teaching.answers`. sympy is imported on first use only, and only for input that
passed a whitelist of characters and names (no arbitrary names reach `parse_expr`), with guards against huge powers.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

logger = logging.getLogger(__name__)

REL_TOL = 1e-9
ABS_TOL = 1e-12
MIN_ROUNDED_PLACES = 2
_MAX_CHARS = 300
_MATH_NAMES = frozenset({"sqrt", "pi", "oo", "log", "ln", "sin", "cos", "tan", "exp"})

_NUM = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
NUMBER_TOKEN = re.compile(rf"(?<![\w.])-?{_NUM}(?:\s*/\s*{_NUM})?(?:[eE][-+]?\d+)?%?(?![\w.]?\d)")
LATEX_FRAC_TOKEN = re.compile(r"-?\\[dt]?frac\s*(?:\{\s*(-?[\d.]+)\s*\}\s*\{\s*(-?[\d.]+)\s*\}|(\d)(\d))")
_DECIMAL = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.(\d+))?(?:[eE]([-+]?\d+))?")
_FRACTION = re.compile(rf"()([-+]?{_NUM})\s*/\s*({_NUM})|([-+]?)\\frac\{{\s*([-+]?[\d.]+)\s*\}}\{{\s*([\d.]+)\s*\}}")
_MIXED = re.compile(r"([-+]?)(\d+)\s+(\d+)\s*/\s*(\d+)|([-+]?)(\d+)\s*\\frac\{(\d+)\}\{(\d+)\}")
_UNIT_SUFFIX = re.compile(r"(?P<num>.*?[\d}])(?P<space>\s*)(?P<unit>[a-zA-Z][a-zA-Z\s./]*(?:\^\s*\{?\d\}?)?)")
_THOUSANDS_LEAD = re.compile(r"[-+$]?\d{1,3}(?:,\d{3})+(?:\.\d+)?[^,]*")
_BOXED = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])(\s*)")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_SPACING = re.compile(r"\\[,;:! ]|\\q?quad(?![a-zA-Z])|\\displaystyle|\\left(?![a-zA-Z])|\\right(?![a-zA-Z])|~")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree(?![a-zA-Z])")
_RELATION = re.compile(r"(?<![<>!=])=(?!=)|\\approx(?![a-zA-Z])|≈")
# ".x" attribute access, "1.2.3", "1e5" inside expressions, "1 000" (would multiply to 0)
_SUSPICIOUS = re.compile(r"\.\s*[a-zA-Z(]|\.\d*\.|\d[eE][-+]?\d|\d\s+[\d.]")
_LATEX_WORDS = {r"\pi": " pi ", r"\cdot": "*", r"\times": "*", r"\div": "/", r"\infty": " oo ", r"\ln": " ln "}
_LATEX_WORDS |= {rf"\{name}": f" {name} " for name in ("log", "sin", "cos", "tan", "exp")}
_LATEX_PLAIN = (("\\%", "%"), ("\\$", "$"), ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\(", ""), ("\\)", ""))


@dataclass(frozen=True)
class Num:
    value: Any  # Fraction when exactly rational, else a sympy expression
    places: int | None = None  # decimal places as written ("0.30" -> 2); None for integers, fractions, symbols


@dataclass(frozen=True)
class Seq:
    brackets: str  # "()", "[]", "(]", ... or "" when written bare ("1, 2")
    items: tuple[Any, ...]


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


def _braced(text: str, start: int) -> str | None:
    """Content of the brace group opening at text[start] == '{', or None when it is never closed."""
    close = _closing_braces(text).get(start)
    return text[start + 1 : close] if close is not None else None


def last_boxed(text: str) -> str | None:
    """Content of the last complete, non-empty `\\boxed{...}` / `\\fbox{...}` / `\\boxed 5` (nested braces allowed)."""
    if "\\boxed" not in text and "\\fbox" not in text:
        return None
    pairs: dict[int, int] | None = None
    for match in reversed(list(_BOXED.finditer(text))):
        end = match.end()
        if text[end : end + 1] == "{":
            pairs = _closing_braces(text) if pairs is None else pairs
            close = pairs.get(end)
            inner = text[end + 1 : close] if close is not None else None
        else:  # "\\boxed 5"
            token = re.match(r"[^\s$\\}]+", text[end:]) if match.group(1) else None
            inner = token.group(0) if token else None
        if inner is not None and inner.strip():
            return inner.strip()
    return None


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


def _split_top_level(s: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, char in enumerate(s):
        depth += (char in "([{") - (char in ")]}")
        if char == "," and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    return [*parts, s[start:]]


def _right_hand_side(s: str) -> str:
    """ "x = 3" -> "3", "y = 2x + 1" -> "2x + 1"; a list of equations ("x=3, y=4") is left to the sequence split."""
    pieces = _RELATION.split(s)
    if len(pieces) > 2 and len(_split_top_level(pieces[-2])) > 1:
        return s
    return _trim(pieces[-1])


def _sequence(s: str) -> tuple[str, list[str]] | None:
    """(brackets, items) for "(1, 2)", "[0, 1)", "1, 2"; None for one value (thousands like "1,234" included)."""
    brackets, inner = "", s
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]":
        depth = 0
        for char in s[:-1]:
            depth += (char in "([{") - (char in ")]}")
            if depth == 0:
                break
        else:
            brackets, inner = s[0] + s[-1], s[1:-1]
    elif _THOUSANDS_LEAD.fullmatch(s):
        return None
    parts = [p.strip() for p in _split_top_level(inner)]
    return (brackets, parts) if len(parts) > 1 and all(parts) else None


def _exact(s: str) -> Num | None:
    """Integers, decimals, fractions and mixed numbers, without sympy."""
    if (m := _DECIMAL.fullmatch(s)) and re.search(r"\d", s):
        if m.group(2) and abs(int(m.group(2))) > 400:
            return None
        try:
            value = Fraction(Decimal(s.replace(",", "")))
        except (InvalidOperation, ValueError, OverflowError):
            return None
        return Num(value, len(m.group(1)) if m.group(1) and not m.group(2) else None)
    if m := _MIXED.fullmatch(s):
        sign, whole, num, den = m.group(1, 2, 3, 4) if m.group(2) else m.group(5, 6, 7, 8)
        if not 0 <= int(num) < int(den):
            return None
        value = int(whole) + Fraction(int(num), int(den))
        return Num(-value if sign == "-" else value)
    if m := _FRACTION.fullmatch(s):
        sign, num, den = m.group(1, 2, 3) if m.group(2) else m.group(4, 5, 6)
        try:
            value = Fraction(Decimal(num.replace(",", ""))) / Fraction(Decimal(den.replace(",", "")))
        except (InvalidOperation, ZeroDivisionError, ValueError):
            return None
        return Num(-value if sign == "-" else value)
    return None


def _latex_to_plain(s: str) -> str | None:
    r"""`\frac{a}{b}` -> ((a)/(b)), `\sqrt[n]{x}` -> ((x)**(1/(n))), `\pi` -> pi ...; None if LaTeX is left over."""
    for _ in range(50):
        m = re.search(r"\\(frac|sqrt)(?![a-zA-Z])\s*", s)
        if not m:
            break
        i, root, args = m.end(), None, []
        if m.group(1) == "sqrt" and s[i : i + 1] == "[":
            close = s.find("]", i)
            if close < 0:
                return None
            root, i = s[i + 1 : close], close + 1
        for _ in range(2 if m.group(1) == "frac" else 1):
            i = len(s) - len(s[i:].lstrip())
            arg = _braced(s, i) if s[i : i + 1] == "{" else (s[i] if i < len(s) else None)
            if arg is None:
                return None
            args.append(arg)
            i += len(arg) + 2 if s[i] == "{" else 1
        if m.group(1) == "frac":
            new = f"(({args[0]})/({args[1]}))"
        else:
            new = f"(({args[0]})**(1/({root})))" if root else f"sqrt({args[0]})"
        s = s[: m.start()] + new + s[i:]
    for old, new in _LATEX_WORDS.items():
        s = s.replace(old, new)
    return None if "\\" in s else s.replace("{", "(").replace("}", ")")


@functools.lru_cache(maxsize=1)
def _sympy() -> Any:
    import sympy
    from sympy.parsing import sympy_parser as parser

    steps = (parser.implicit_multiplication_application, parser.convert_xor, parser.rationalize)
    names = {c: sympy.Symbol(c) for c in "abcdfghjklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"}
    names |= {"e": sympy.E, "i": sympy.I, "pi": sympy.pi, "oo": sympy.oo, "ln": sympy.log}
    names |= {name: getattr(sympy, name) for name in ("sqrt", "log", "sin", "cos", "tan", "exp")}
    nodes = {n: getattr(sympy, n) for n in ("Add", "Mul", "Pow", "Integer", "Float", "Rational", "Symbol", "Number")}
    return sympy, parser.parse_expr, parser.standard_transformations + steps, names, nodes


def _symbolic(s: str) -> Num | None:
    """A constant or expression through sympy, on a whitelisted alphabet (no eval of arbitrary names), with guards
    against huge powers. The whitelist runs before sympy is imported, so plain words cost nothing."""
    plain = _latex_to_plain(s)
    if plain is None or len(plain) > _MAX_CHARS or not re.fullmatch(r"[0-9a-zA-Z+\-*/^().\s]+", plain):
        return None
    words = re.findall(r"[a-zA-Z]+", plain)
    if any(len(w) > 1 and w not in _MATH_NAMES for w in words) or _SUSPICIOUS.search(plain):
        return None
    if not (re.search(r"[\d+\-*/^]", plain) or any(w in _MATH_NAMES for w in words)):
        return None
    sympy, parse_expr, transforms, names, nodes = _sympy()
    expr = parse_expr(
        plain, local_dict=dict(names), global_dict=dict(nodes), transformations=transforms, evaluate=False
    )
    if not isinstance(expr, sympy.Expr):
        return None
    big_powers = 0
    for power in expr.atoms(sympy.Pow):
        if any(p.exp not in (-1, sympy.S.Half) for p in power.exp.atoms(sympy.Pow)):
            return None  # a power inside an exponent (9^9^9) could take forever
        exponent = power.exp.doit()
        if exponent.is_number and abs(exponent) > 64:
            big_powers += 1
            if abs(exponent) > 10_000 or big_powers > 1:
                return None
    value = expr.doit()
    if value.has(sympy.zoo, sympy.nan):
        return None
    return Num(Fraction(int(value.p), int(value.q))) if value.is_Rational else Num(value)


def _single(s: str) -> tuple[Num, ...]:
    percent = s.endswith("%") or s.lower().endswith(" percent")
    s = re.sub(r"\s*(%|percent)$", "", s, flags=re.IGNORECASE) if percent else s
    s = re.sub(r"^([-+]?)\s*(?:\$|€|£|usd\b)\s*", r"\1", s, flags=re.IGNORECASE).strip()
    unit = _UNIT_SUFFIX.fullmatch(s)
    if unit and unit["unit"].split()[0].split("^")[0] not in _MATH_NAMES and (unit["space"] or len(unit["unit"]) > 1):
        s = unit["num"].strip()  # "12 cm", "5 dollars", "3m"; but "2x" and "2 pi" stay expressions
    number = _exact(s) or _symbolic(s)
    if number is None:
        return ()
    if not percent:
        return (number,)
    exact = isinstance(number.value, Fraction)
    return number, Num(number.value / 100, (number.places or 0) + 2 if exact else None)


@functools.lru_cache(maxsize=8192)
def candidates(text: str) -> tuple[Any, ...]:
    """The values a written answer can mean (two for a percentage), most literal first; () when it is not math."""
    try:
        s = _right_hand_side(clean(text))
        if not s or len(s) > _MAX_CHARS:
            return ()
        sequence = _sequence(s)
        if sequence is None:
            return _single(s)
        items = [candidates(part) for part in sequence[1]]
        flat = all(items) and all(isinstance(i[0], Num) for i in items)
        return (Seq(sequence[0], tuple(i[0] for i in items)),) if flat else ()
    except Exception as exc:  # noqa: BLE001 - sympy raises many types on odd input; unparseable is the answer
        logger.debug("cannot parse answer %r: %s", text[:80], exc)
        return ()


def _terminates(value: Any) -> bool:
    """A finite decimal expansion (denominator 2^a 5^b); symbols and non-real values count as "finite" too."""
    if not isinstance(value, Fraction):
        return bool(value.free_symbols) or not value.is_real
    return pow(10, value.denominator.bit_length(), value.denominator) == 0


def _to_sympy(value: Any) -> Any:
    return _sympy()[0].Rational(value.numerator, value.denominator) if isinstance(value, Fraction) else value


def _numerically_close(a: Any, b: Any) -> bool:
    sympy = _sympy()[0]
    x, y = sympy.N(a, 30), sympy.N(b, 30)
    if not (x.is_number and y.is_number):
        return False
    diff, scale = abs(sympy.N(x - y, 30)), max(abs(x), abs(y))
    return bool(diff <= ABS_TOL or diff <= REL_TOL * scale)


def _close(a: Any, b: Any) -> bool:
    a, b = _to_sympy(a), _to_sympy(b)
    if a == b:
        return True
    if not (a.free_symbols or b.free_symbols):
        return _numerically_close(a, b)
    if a.free_symbols != b.free_symbols:
        return False
    symbols = sorted(a.free_symbols, key=str)
    points = [{s: _sympy()[0].Rational(3 + 2 * k + j, 7 + k) for j, s in enumerate(symbols)} for k in range(3)]
    return all(_numerically_close(a.subs(p), b.subs(p)) for p in points)


def _rounded(decimal: Num, other: Num) -> bool:
    """`decimal` is `other` rounded to its (>= 2) written places, and `other` has no finite decimal expansion."""
    places = decimal.places
    if places is None or not MIN_ROUNDED_PLACES <= places <= 30 or _terminates(other.value):
        return False
    half = Fraction(1, 2 * 10**places)
    if isinstance(other.value, Fraction):
        return abs(other.value - decimal.value) <= half
    return bool(abs(_sympy()[0].N(other.value - _to_sympy(decimal.value), 40)) <= _to_sympy(half))


def values_match(a: Any, b: Any) -> bool:
    """Whether two candidate values are the same answer (the rule in `atlas.teaching.answers`); never raises."""
    try:
        if isinstance(a, Seq) or isinstance(b, Seq):
            same_shape = isinstance(a, Seq) and isinstance(b, Seq) and len(a.items) == len(b.items)
            if not same_shape or (a.brackets and b.brackets and a.brackets != b.brackets):
                return False
            return all(values_match(x, y) for x, y in zip(a.items, b.items, strict=True))
        both_exact = isinstance(a.value, Fraction) and isinstance(b.value, Fraction)
        if (a.value == b.value) if both_exact else _close(a.value, b.value):
            return True
        return _rounded(a, b) or _rounded(b, a)
    except Exception as exc:  # noqa: BLE001 - a comparison sympy cannot decide is not a match
        logger.debug("cannot compare %r and %r: %s", a, b, exc)
        return False
