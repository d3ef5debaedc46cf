"""The two-pass teaching protocol: one implementation for the probe stage, GRPO and evaluation.

For a problem q with ground truth a:
1. baseline: the student solves q alone (k samples);
2. probe: what the teacher gets to see of the student (`protocol.probe`): either the student's stated approach (a
   separate short generation, as in ATLAS) or its first attempt at q (the first baseline sample, at no extra cost);
3. guidance: the teacher reads q and the probe and writes `<thinking>...</thinking><teaching>...</teaching>`;
4. taught answer: the student solves q with only the `<teaching>` text as a hint;
5. answers are extracted and checked by mathematical equivalence (`atlas.teaching.answers`).

The teacher prompt is rendered ONCE through the teacher's chat template (`render_teacher_prompt`); GRPO trains on
exactly that string and evaluation generates from exactly that string. Student prompts use two worked examples as
earlier chat turns: a 135M student ignores zero-shot format instructions (reference/teaching-feasibility.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from atlas.config import ProtocolSettings
from atlas.llm.generation import Generation, Generator
from atlas.teaching.answers import answers_match, completed, extract_answer, mentions_answer
from atlas.teaching.records import BaselineSample, ProbeRecord

STUDENT_SYSTEM = (
    "You are a careful student. Solve the problem, then give the final answer inside <solution></solution>."
)
TEACHER_SYSTEM = {
    "approach": (
        "You are a teacher for a small student model. Read the problem and the student's stated approach. "
        "Inside <thinking></thinking>, diagnose the approach in one or two sentences. Inside <teaching></teaching>, "
        "give one or two short sentences of guidance that fix the approach. Never state the final answer."
    ),
    "attempt": (
        "You teach a small student. Read the problem and the student's attempt. In <thinking></thinking>, judge the "
        "attempt. In <teaching></teaching>, write a short hint that fixes it, or nothing if it is right. "
        "Never state the final answer."
    ),
}
PROBE_LABEL = {"approach": "Student's approach", "attempt": "Student's attempt"}
PROBE_INSTRUCTION = "Do not solve it yet. In one sentence, say what kind of problem this is and your first step."
SOLVE_INSTRUCTION = "Solve it step by step and put the final number in <solution></solution>."

# Worked examples shown before every student question: same format, same level of hint as the real question.
_EXAMPLES = [
    {
        "problem": "Tom has 3 marbles and finds 4 more. How many marbles does he have now?",
        "hint": "Finding more means adding: the calculation is 3 + 4.",
        "answer": "Tom had 3 marbles and found 4 more, so 3 + 4 = 7.\n<solution>7</solution>",
    },
    {
        "problem": "5 notebooks cost 20 dollars. How much do 2 notebooks cost?",
        "hint": "First find the price of one notebook by dividing the total cost by the number of notebooks.",
        "answer": (
            "One notebook costs 20 / 5 = 4 dollars. So 2 notebooks cost 2 × 4 = 8 dollars.\n<solution>8</solution>"
        ),
    },
]

_TEACHING_RE = re.compile(r"<teaching>(.*?)(?:</teaching>|$)", re.DOTALL)
_THINKING_RE = re.compile(r"<thinking>.*?(?:</thinking>|$)", re.DOTALL)


def _question(problem: str, hint: str | None) -> str:
    text = f"Problem: {problem.strip()}"
    if hint is not None:
        text += f"\nHint: {hint.strip()}"
    return f"{text}\n{SOLVE_INSTRUCTION}"


def student_messages(problem: str, hint: str | None = None, few_shot: bool = True) -> list[dict[str, str]]:
    """The student's solve prompt, without guidance (baseline) or with the teacher's `<teaching>` text as a hint."""
    messages = [{"role": "system", "content": STUDENT_SYSTEM}]
    if few_shot:
        for ex in _EXAMPLES:
            messages.append({"role": "user", "content": _question(ex["problem"], ex["hint"] if hint else None)})
            messages.append({"role": "assistant", "content": ex["answer"]})
    messages.append({"role": "user", "content": _question(problem, hint)})
    return messages


def probe_messages(problem: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": STUDENT_SYSTEM},
        {"role": "user", "content": f"Problem: {problem.strip()}\n{PROBE_INSTRUCTION}"},
    ]


def teacher_messages(problem: str, probe: str, probe_kind: str = "approach") -> list[dict[str, str]]:
    user = f"Problem: {problem.strip()}\n\n{PROBE_LABEL[probe_kind]}: {probe.strip() or '(no answer)'}"
    return [{"role": "system", "content": TEACHER_SYSTEM[probe_kind]}, {"role": "user", "content": user}]


def render_teacher_prompt(tokenizer, problem: str, probe: str, probe_kind: str = "approach") -> str:
    """The exact string the teacher sees, in SFT, GRPO and evaluation alike."""
    messages = teacher_messages(problem, probe, probe_kind)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def teacher_target(diagnosis: str | None, teaching: str) -> str:
    """The SFT completion: the format GRPO then samples from."""
    thinking = (diagnosis or "").strip() or "The approach needs one clear next step."
    return f"<thinking>{thinking}</thinking>\n<teaching>{(teaching or '').strip()}</teaching>"


def extract_teaching(completion: str) -> str:
    """The text that reaches the student.

    - `<teaching>...</teaching>` present: its content (an unclosed tag runs to the end of the text);
    - no `<teaching>` tag: the completion with any `<thinking>` block removed (the analysis never reaches the student);
    - result stripped; it may be empty, and an empty hint is then treated as "no guidance".
    """
    match = _TEACHING_RE.search(completion)
    if match:
        return match.group(1).strip()
    return _THINKING_RE.sub("", completion).replace("</thinking>", "").strip()


def guidance_leaks(teaching: str, ground_truth: str | None, problem: str = "") -> bool:
    """True when the guidance states the final answer (the student must work it out). A number that the problem
    itself states is not a leak when the guidance repeats it."""
    if not (ground_truth and teaching) or not mentions_answer(teaching, ground_truth):
        return False
    return not (problem and mentions_answer(problem, ground_truth))


def likelihood_target(ground_truth: str) -> str:
    """What the student is teacher-forced to say for the likelihood reward: the answer inside its solution tags."""
    return f"<solution>{ground_truth.strip()}</solution>"


def likelihood_prompt(student_prompt: str) -> str:
    """The rendered student prompt, prefilled up to the answer (scored without decoding)."""
    return student_prompt + "So the final answer is "


def grade(text: str, ground_truth: str | None, truncated: bool) -> tuple[bool, bool]:
    """(correct, completed): completed = an answer could be extracted and the output was not truncated."""
    answer = extract_answer(text)
    correct = ground_truth is not None and answers_match(answer, ground_truth)
    return correct, completed(text, truncated)


def probe_records(
    p: ProtocolSettings,
    student: Generator,
    problems: Sequence[Mapping[str, Any]],
    probes: Sequence[str | None] | None = None,
) -> list[ProbeRecord]:
    """Steps 1-2 of the protocol, and the no-guidance log p(gold), for `problems` (rows with a problem and, when
    known, id, split, kind and ground_truth). `probes` holds the probe of a problem when it is already known (a
    user's own); the others are generated. Without a ground truth there is no log p(gold) and nothing is correct."""
    given = list(probes) if probes is not None else [None] * len(problems)
    baselines = student.generate(
        [student_messages(r["problem"], None, p.few_shot) for r in problems],
        max_new_tokens=p.student_max_tokens,
        temperature=p.student_temperature,
        num_samples=p.baseline_k,
        seed=p.seed,
        desc=f"student: baseline x{p.baseline_k}",
    )
    if p.probe == "attempt":
        generated = {i: samples[0].text for i, samples in enumerate(baselines)}
    else:
        todo = [i for i, probe in enumerate(given) if probe is None]
        outs = student.generate(
            [probe_messages(problems[i]["problem"]) for i in todo],
            max_new_tokens=p.probe_max_tokens,
            temperature=0.0,
            desc="student: probes",
        )
        generated = {i: o[0].text for i, o in zip(todo, outs, strict=True)}
    gold = [i for i, r in enumerate(problems) if r.get("ground_truth")]
    scored = student.logprob(
        [likelihood_prompt(student.render(student_messages(problems[i]["problem"], None, p.few_shot))) for i in gold],
        [likelihood_target(problems[i]["ground_truth"]) for i in gold],
        desc="student: log p(gold)",
    )
    logps = dict(zip(gold, scored, strict=True))
    out = []
    for i, (row, samples) in enumerate(zip(problems, baselines, strict=True)):
        truth = row.get("ground_truth") or None
        graded = tuple(
            BaselineSample(s.text, s.tokens, s.truncated, *grade(s.text, truth, s.truncated)) for s in samples
        )
        out.append(
            ProbeRecord(
                id=str(row.get("id", i)),
                split=row.get("split"),
                kind=row.get("kind") or "unknown",
                problem=row["problem"],
                ground_truth=truth,
                probe=(given[i] if given[i] is not None else generated[i]).strip(),
                baseline=graded,
                baseline_accuracy=sum(g.correct for g in graded) / len(graded),
                baseline_logp=logps.get(i),
            )
        )
    return out


def teacher_completions(
    p: ProtocolSettings, teacher: Generator, problems: Sequence[str], probes: Sequence[str]
) -> list[str]:
    """Step 3: the teacher's full completion for each (problem, probe), greedy (the deployment setting), from the
    exact prompt GRPO trained on (`render_teacher_prompt` with the teacher's tokenizer)."""
    prompts = [
        render_teacher_prompt(teacher.tokenizer, q, probe, p.probe) for q, probe in zip(problems, probes, strict=True)
    ]
    outs = teacher.generate(
        prompts, max_new_tokens=p.teacher_max_tokens, temperature=0.0, desc=f"teacher {getattr(teacher, 'name', '')}"
    )
    return [o[0].text for o in outs]


@dataclass(frozen=True)
class Taught:
    """Steps 3-4 for a list of problems: what the teacher wrote, what reached the student, and the student's answers
    under it (with their log p(gold); None where there is no ground truth or no scoring)."""

    completions: list[str]  # the teacher's full outputs ("" for the student alone)
    teachings: list[str]  # the `<teaching>` text; "" means silent
    samples: list[list[Generation]]
    logps: list[float | None]


def teach(
    p: ProtocolSettings,
    teacher: Generator | None,
    student: Generator,
    records: Sequence[ProbeRecord],
    k: int,
    seed: int,
    label: str,
    score: bool = True,
) -> Taught:
    """The second pass for records whose first pass is done (`probe_records`): the teacher's guidance (none when
    `teacher` is None: the student alone) and `k` student answers under it. Evaluation, the gate and the served
    teacher model (`atlas.ops.teacher_model`) all go through here."""
    if teacher is None:
        completions = [""] * len(records)
    else:
        completions = teacher_completions(p, teacher, [r.problem for r in records], [r.probe for r in records])
    teachings = [extract_teaching(c) for c in completions]
    score = score and all(r.ground_truth for r in records)
    samples, logps = taught_answers(p, student, records, teachings, k, seed=seed, label=label, score=score)
    return Taught(completions, teachings, samples, logps)


def taught_answers(
    p: ProtocolSettings,
    student: Generator,
    probes: Sequence[ProbeRecord],
    teachings: Sequence[str],
    k: int,
    seed: int,
    label: str,
    score: bool = True,
) -> tuple[list[list[Generation]], list[float | None]]:
    """Step 4 of the protocol: `k` student answers per problem under its guidance, and the log p(gold) under it when
    `score`. With a greedy student an empty guidance is the baseline prompt, so its answer and log p(gold) are the
    cached baseline ones (exactly what a new generation would give, minus the batch-padding jitter); only guided
    prompts are generated."""
    reuse = p.student_temperature == 0
    todo = [i for i, t in enumerate(teachings) if t or not reuse]
    prompts = [student_messages(probes[i].problem, teachings[i] or None, p.few_shot) for i in todo]
    fresh = student.generate(
        prompts,
        max_new_tokens=p.student_max_tokens,
        temperature=p.student_temperature,
        num_samples=k,
        seed=seed,
        desc=f"student taught by {label} x{k}",
    )
    fresh_logps: list[float | None] = [None] * len(todo)
    if score:
        fresh_logps = student.logprob(
            [likelihood_prompt(student.render(m)) for m in prompts],
            [likelihood_target(probes[i].ground_truth) for i in todo],
            desc=f"student log p(gold) [{label}]",
        )
    samples, logps = [], []
    for pr in probes:
        first = pr.first_attempt
        samples.append([Generation(first.text, first.tokens, first.truncated)] * k)
        logps.append(pr.baseline_logp if score else None)
    for i, outs, logp in zip(todo, fresh, fresh_logps, strict=True):
        samples[i], logps[i] = outs, logp
    return samples, logps
