"""A deterministic generator of teaching data in the Arc-ATLAS-Teach shape: math word problems with verifiable answers.

Each record has a problem, its integer ground truth, a short student-style `approach` (sometimes right, sometimes
with the typical mistake of its kind), a teacher `diagnosis` that names the mistake or confirms the plan, and
`teaching`: one or two short sentences that state the key relation or the expression, never the answer.

Design constraints come from measuring SmolLM2-135M-Instruct as the student (reference/teaching-feasibility.md):

* the answer never equals a number written in the question, so copying a number from the question is never right;
* guidance states the plan, the relation or the expression ("multiply the number of boxes by the number in each box",
  "first find the price of one item", "the calculation is 4 × 100") with numbers copied from the question, never a
  computed one: a 135M teacher cannot compute them reliably (measured: its "18 / 3 = 5 gaps" hints were wrong half the
  time); among such wordings, the one measured to turn this student's wrong answers right most often
  (docs/cpu-preset.md);
* no text shown with the problem (approach, diagnosis, teaching) states the answer: asserted for every record.

`difficulty` in [0, 1] scales the size of the numbers, the number of steps of `multi_step`, the share of compound
unit problems and how often the student's approach contains a mistake. Record `i` depends only on (seed, i, kinds,
difficulty, the records before it), so a larger `n` extends a smaller set without changing it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from atlas.data.schema import loose_problem_key, make_record

KINDS = ("add", "sub", "mul", "two_step", "multi_step", "rate", "percent", "units", "fencepost")
_MAX_ATTEMPTS = 200

_NAMES = [
    ("Mia", "she"), ("Leo", "he"), ("Ava", "she"), ("Omar", "he"), ("Zoe", "she"), ("Ivan", "he"), ("Nora", "she"),
    ("Sam", "he"), ("Lena", "she"), ("Ravi", "he"), ("Emma", "she"), ("Tariq", "he"), ("Yuki", "she"), ("Ben", "he"),
    ("Sofia", "she"), ("Kofi", "he"), ("Ines", "she"), ("Marco", "he"), ("Hana", "she"), ("Diego", "he"),
]  # fmt: skip
_THINGS = ["stickers", "marbles", "shells", "stamps", "cards", "beads", "apples", "pencils", "coins", "buttons"]
_CONTAINERS = [("boxes", "box"), ("bags", "bag"), ("jars", "jar"), ("packs", "pack"), ("trays", "tray")]
_PRICED = [("pens", "pen"), ("notebooks", "notebook"), ("erasers", "eraser"), ("mugs", "mug"), ("tickets", "ticket")]
_PLACES = [("students", "a school"), ("members", "a club"), ("people", "a town survey"), ("trees", "an orchard")]
_UNITS = [  # (big unit, small unit, factor, how the thing is measured: "{}" is the amount)
    ("meters", "centimeters", 100, "A rope is {} long."), ("kilograms", "grams", 1000, "A bag of rice weighs {}."),
    ("hours", "minutes", 60, "A train ride lasts {}."), ("minutes", "seconds", 60, "A song lasts {}."),
    ("liters", "milliliters", 1000, "A tank holds {}."), ("kilometers", "meters", 1000, "A hiking trail is {} long."),
]  # fmt: skip
_LINES = [
    ("trees", "road"), ("lamp posts", "path"), ("fence posts", "fence"), ("flags", "track"), ("benches", "park path"),
    ("poles", "street"), ("lanterns", "bridge"), ("cones", "running lane"), ("bushes", "driveway"),
    ("buoys", "swimming lane"), ("signs", "trail"), ("torches", "garden wall"),
]  # fmt: skip


@dataclass(frozen=True)
class _Draft:
    problem: str
    answer: int
    plan: str  # a correct student approach
    mistake: str  # the same student making the typical mistake of this kind
    confirm: str  # diagnosis of a correct plan
    diagnose: str  # diagnosis of the mistake
    teaching: str  # guidance: the relation or expression, never the answer


def _upto(rng: random.Random, low: int, high_easy: int, high_hard: int, difficulty: float) -> int:
    return rng.randint(low, max(low, round(high_easy + difficulty * (high_hard - high_easy))))


def _person(rng: random.Random) -> tuple[str, str]:
    return rng.choice(_NAMES)


def _add(rng: random.Random, d: float) -> _Draft:
    (name, he), things = _person(rng), rng.choice(_THINGS)
    a, b = _upto(rng, 2, 9, 90, d), _upto(rng, 2, 9, 90, d)
    verb = rng.choice(["finds", "is given", "buys", "wins"])
    problem = f"{name} has {a} {things}. {he.capitalize()} {verb} {b} more. How many {things} does {name} have now?"
    return _Draft(
        problem, a + b,
        plan=f"I add the {b} new {things} to the {a} {name} already has.",
        mistake=f"The answer is the {b} {things} {name} got.",
        confirm="The plan is right: getting more means adding the two amounts.",
        diagnose="The student copies one number; the question asks for the total, so both amounts must be combined.",
        teaching=f"Getting more means adding: the calculation is {a} + {b}.",
    )  # fmt: skip


def _sub(rng: random.Random, d: float) -> _Draft:
    (name, he), things = _person(rng), rng.choice(_THINGS)
    b = _upto(rng, 2, 9, 60, d)
    a = b + _upto(rng, 2, 9, 60, d)
    verb = rng.choice(["gives away", "loses", "uses", "sells"])
    problem = f"{name} has {a} {things}. {he.capitalize()} {verb} {b} of them. How many {things} are left?"
    return _Draft(
        problem, a - b,
        plan=f"{name} {verb} {b}, so I take {b} away from {a}.",
        mistake=f"{name} {verb} {b}, so I add {a} and {b}.",
        confirm=f"The plan is right: when {name} {verb} some, the amount goes down.",
        diagnose=f"The student adds, but when {name} {verb} {things}, they are taken away.",
        teaching=f"Taking away means subtracting: the calculation is {a} - {b}.",
    )  # fmt: skip


def _mul(rng: random.Random, d: float) -> _Draft:
    things, (boxes, box) = rng.choice(_THINGS), rng.choice(_CONTAINERS)
    a, b = _upto(rng, 2, 5, 15, d), _upto(rng, 2, 9, 25, d)
    problem = rng.choice(
        [
            f"There are {a} {boxes} with {b} {things} in each {box}. How many {things} are there in all?",
            f"A shop packs {b} {things} in every {box}. How many {things} are in {a} {boxes}?",
        ]
    )
    return _Draft(
        problem, a * b,
        plan=f"Every {box} holds the same number, so I multiply {a} by {b}.",
        mistake=f"I add the {boxes} and the {things}: {a} plus {b}.",
        confirm=f"The plan is right: equal groups of {things} call for multiplication.",
        diagnose=f"The student adds the number of {boxes} to the number in one {box}; equal groups need multiplying.",
        teaching=f"Multiply the number of {boxes} by the number of {things} in each {box}.",
    )  # fmt: skip


def _two_step(rng: random.Random, d: float) -> _Draft:
    (name, he), things = _person(rng), rng.choice(_THINGS)
    a, b = _upto(rng, 3, 12, 80, d), _upto(rng, 2, 9, 60, d)
    c = _upto(rng, 2, 9, 60, d)
    c = min(c, a + b - 1)
    friend = rng.choice([n for n, _ in _NAMES if n != name])
    problem = (
        f"{name} has {a} {things}. {he.capitalize()} buys {b} more and then gives {c} to {friend}. "
        f"How many {things} does {name} have now?"
    )
    return _Draft(
        problem, a + b - c,
        plan=f"I add the {b} bought {things}, then subtract the {c} given to {friend}.",
        mistake=f"I add all the numbers: {a}, {b} and {c}.",
        confirm="The plan is right: buying adds and giving away subtracts.",
        diagnose=f"The student treats giving {things} away as adding; giving away removes them.",
        teaching=f"Buying adds and giving away subtracts, so the calculation is {a} + {b} - {c}.",
    )  # fmt: skip


def _multi_step(rng: random.Random, d: float) -> _Draft:
    (name, he), things = _person(rng), rng.choice(_THINGS)
    start = _upto(rng, 10, 20, 120, d)
    days = ["On Monday", "On Tuesday", "On Wednesday", "On Thursday"][: 2 + round(2 * d)]
    total, sentences, terms = start, [], [str(start)]
    for i, day in enumerate(days):
        amount = _upto(rng, 2, 9, 40, d)
        if i % 2 == 1 and amount < total:
            total -= amount
            sentences.append(f"{day} {he} gives away {amount}.")
            terms.append(f"- {amount}")
        else:
            total += amount
            sentences.append(f"{day} {he} gets {amount} more.")
            terms.append(f"+ {amount}")
    problem = f"{name} starts with {start} {things}. {' '.join(sentences)} How many {things} does {name} have now?"
    return _Draft(
        problem, total,
        plan="I go day by day: add what comes in and subtract what is given away.",
        mistake=f"I only look at {days[0][3:]}: {start} {terms[1]}.",
        confirm="The plan is right: every day changes the amount, in order.",
        diagnose="The student stops after the first day; every later day changes the amount too.",
        teaching=f"Go day by day: add what comes in and subtract what is given away, so {' '.join(terms)}.",
    )  # fmt: skip


def _rate(rng: random.Random, d: float) -> _Draft:
    unit, k = _upto(rng, 2, 6, 25, d), _upto(rng, 2, 4, 10, d)
    m = rng.choice([x for x in range(2, max(5, round(4 + 8 * d)) + 1) if x != k])
    total = unit * k
    style = rng.randrange(3)
    if style == 0:
        items, item = rng.choice(_PRICED)
        problem = f"{k} {items} cost {total} dollars. How much do {m} {items} cost?"
        one = f"the price of one {item}"
    elif style == 1:
        problem = f"A car travels {total} km in {k} hours at a steady speed. How far does it travel in {m} hours?"
        one = "the distance for one hour"
    else:
        name, _ = _person(rng)
        problem = f"{name} reads {total} pages in {k} days, the same number each day. How many pages in {m} days?"
        one = "the pages for one day"
    return _Draft(
        problem, unit * m,
        plan=f"First I find {one}, then I multiply by {m}.",
        mistake=f"I multiply {total} by {m}.",
        confirm=f"The plan is right: find {one} first, then scale up.",
        diagnose=f"The student multiplies the total for {k} by {m}; first the total must be shared out to find {one}.",
        teaching=f"First find {one}: divide {total} by {k}, then multiply by {m}.",
    )  # fmt: skip


def _percent(rng: random.Random, d: float) -> _Draft:
    pct = rng.choice([10, 20, 25, 50, 75] if d < 0.5 else [10, 15, 20, 25, 30, 40, 60, 70, 75, 80, 90])
    step = 100 // _gcd(pct, 100)
    base = step * _upto(rng, 2, 10, 40, d)
    people, place = rng.choice(_PLACES)
    verb = {"students": "walk to school", "members": "play chess", "people": "own a bike", "trees": "are apple trees"}
    problem = f"There are {base} {people} in {place}. {pct}% of them {verb[people]}. How many is that?"
    return _Draft(
        problem, base * pct // 100,
        plan=f"{pct}% means {pct} out of every 100, so I take that part of {base}.",
        mistake=f"The answer is {pct}, the percent in the question.",
        confirm="The plan is right: a percent is a part of every hundred.",
        diagnose=f"The student gives the percentage itself; {pct}% is a share of the {base} {people}, not a count.",
        teaching=f"{pct}% means {pct} out of every 100, so compute {base} × {pct} ÷ 100.",
    )  # fmt: skip


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def _units(rng: random.Random, d: float) -> _Draft:
    big, small, factor, measured = rng.choice(_UNITS)
    a = _upto(rng, 2, 5, 30, d)
    if rng.random() < 0.3 + 0.5 * d:
        b = rng.randint(1, factor - 1)
        problem = f"{measured.format(f'{a} {big} and {b} {small}')} How many {small} is that?"
        return _Draft(
            problem, a * factor + b,
            plan=f"I turn the {a} {big} into {small}, then add the {b} {small}.",
            mistake=f"I add {a} and {b}.",
            confirm=f"The plan is right: convert to {small} first, then add.",
            diagnose=f"The student adds {big} to {small} directly; they must be in the same unit first.",
            teaching=f"The calculation is {a} × {factor} + {b}.",
        )  # fmt: skip
    wrong = 10 if factor != 10 else 100
    problem = f"{measured.format(f'{a} {big}')} How many {small} is that?"
    return _Draft(
        problem, a * factor,
        plan=f"One {big[:-1]} is {factor} {small}, so I multiply {a} by {factor}.",
        mistake=f"I multiply {a} by {wrong}.",
        confirm=f"The plan is right: one {big[:-1]} is {factor} {small}.",
        diagnose=f"The student uses {wrong} {small} per {big[:-1]}, but one {big[:-1]} is {factor} {small}.",
        teaching=f"The calculation is {a} × {factor}.",
    )  # fmt: skip


def _fencepost(rng: random.Random, d: float) -> _Draft:
    gaps, spacing = _upto(rng, 2, 6, 20, d), _upto(rng, 2, 5, 15, d)
    length = gaps * spacing
    things, along = rng.choice(_LINES)
    problem = (
        f"{things.capitalize()} are placed along a {length}-meter {along}, one every {spacing} meters, "
        f"with one at each end. How many {things} are there?"
    )
    return _Draft(
        problem, gaps + 1,
        plan=f"I divide {length} by {spacing} to count the gaps, then add one more for the start.",
        mistake=f"I divide {length} by {spacing}.",
        confirm="The plan is right: there is one more post than there are gaps.",
        diagnose="The student counts the gaps, but with one at each end there is one more than the number of gaps.",
        teaching=f"Divide {length} by {spacing} to count the gaps, then add 1 because both ends get one.",
    )  # fmt: skip


_BUILDERS: dict[str, Callable[[random.Random, float], _Draft]] = {
    "add": _add, "sub": _sub, "mul": _mul, "two_step": _two_step, "multi_step": _multi_step, "rate": _rate,
    "percent": _percent, "units": _units, "fencepost": _fencepost,
}  # fmt: skip


def _acceptable(draft: _Draft) -> bool:
    """The answer is not a number of the question and no shown text states it."""
    from atlas.teaching.answers import mentions_answer

    truth = str(draft.answer)
    texts = (draft.problem, draft.plan, draft.mistake, draft.confirm, draft.diagnose, draft.teaching)
    return draft.answer > 0 and not any(mentions_answer(text, truth) for text in texts)


def generate(n: int, seed: int, kinds: list[str], difficulty: float) -> list[dict]:
    """`n` normalized records (source "synthetic"), kinds in round-robin order, deterministic in all arguments."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        from atlas.core.errors import ConfigError

        raise ConfigError(
            f"data.synthetic.kinds: unknown or empty {unknown or kinds} (valid kinds: {', '.join(KINDS)})"
        )
    if not 0.0 <= difficulty <= 1.0:
        from atlas.core.errors import ConfigError

        raise ConfigError(f"data.synthetic.difficulty must be in [0, 1] (got {difficulty})")
    records, seen = [], set()
    for i in range(n):
        kind = kinds[i % len(kinds)]
        rng = random.Random(f"atlas-synthetic:{seed}:{i}:{kind}:{difficulty}")
        for _ in range(_MAX_ATTEMPTS):
            draft = _BUILDERS[kind](rng, difficulty)
            if loose_problem_key(draft.problem) not in seen and _acceptable(draft):
                break
        else:  # records are a prefix-stable sequence: the ones made so far are all this setting can make
            from atlas.core.errors import ConfigError

            raise ConfigError(
                f"data.synthetic.n={n} is more than the generator can make with kinds {list(kinds)} at difficulty "
                f"{difficulty} (seed {seed}): at most {len(records)} distinct problems (it ran out of new '{kind}' "
                "problems); lower data.synthetic.n, add kinds or raise data.synthetic.difficulty"
            )
        seen.add(loose_problem_key(draft.problem))
        mistaken = rng.random() < 0.3 + 0.4 * difficulty
        record = make_record(
            id=f"syn-{seed}-{i:05d}",
            problem=draft.problem,
            ground_truth=str(draft.answer),
            kind=kind,
            source="synthetic",
            approach=draft.mistake if mistaken else draft.plan,
            diagnosis=draft.diagnose if mistaken else draft.confirm,
            teaching=draft.teaching,
        )
        assert _acceptable(draft), f"synthetic record {record['id']} states its answer"
        records.append(record)
    return records
