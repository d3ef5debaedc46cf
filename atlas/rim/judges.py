"""The judges: what each one evaluates, which trajectory fields it reads, and how its prompt is built.

Built-in judges (`BUILTIN_JUDGES`, fixed): `accuracy`, `helpfulness`, `process`, `diagnostic` (the teaching panel),
`rb2_rating` (single-response quality, used by the RewardBench 2 harness) and `session` (the session-level
evaluator). User-defined judges live in the configuration, under `custom_judges:` in the file or as `JudgeSpec`s
passed to `load_rim_config(..., judges=[...])` from code; either way they are enabled by name in `active_judges`.
There is no process-wide registry: what a configuration means never depends on what else ran.

A trajectory is a mapping with any of the fields in `FIELD_LABELS`; every field except `baseline_accuracy` (a
number the pipeline measured) is untrusted text and goes into a delimited data block (see `prompts.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from atlas.rim.prompts import arbiter_section, build_prompt
from atlas.rim.schema import OutputKind

FIELD_LABELS = {
    "question": "problem",
    "ground_truth": "reference_answer",
    "student_probe": "student_probe_before_guidance",
    "baseline_response": "student_answer_without_guidance",
    "teaching": "teacher_guidance",
    "taught_response": "student_answer_with_guidance",
    "response": "response",
    "task": "task",
    "plan": "plan",
    "steps": "executed_steps",
    "final_answer": "final_answer",
    "execution_mode": "execution_mode",
}

# The session judge's view of the learning memory (`atlas.rim.memory`): an input key, never a trajectory field.
PRIOR_LEARNINGS = "prior_learnings"
MEMORY_LABEL = "learnings_from_earlier_sessions"
MEMORY_STEP = (
    f"   The block {MEMORY_LABEL} lists learnings that earlier session evaluations recorded (with the number of "
    "sessions that showed each). When this session shows one of those patterns, reuse its wording exactly; write a "
    "new learning only for a pattern not listed; never report a recorded learning that this session does not show.\n"
)

TEACHING_CONTEXT = (
    "You sit on a panel that evaluates a teaching interaction: a teacher model wrote guidance for a student model, "
    "and the student then solved a problem with that guidance."
)


@dataclass(frozen=True)
class JudgeSpec:
    name: str
    role: str
    task: str
    criteria: tuple[str, ...]
    fields: tuple[str, ...]
    context: str = TEACHING_CONTEXT
    output: OutputKind = "judgment"
    extra_steps: str = ""
    panel: bool = True  # False: not a teaching-panel judge (cannot be enabled in active_judges)

    def material(self, inputs: Mapping[str, Any]) -> list[tuple[str, Any]]:
        items = [(FIELD_LABELS[f], inputs.get(f)) for f in self.fields if f != "baseline_accuracy"]
        if self._memory(inputs):
            items.append((MEMORY_LABEL, list(inputs[PRIOR_LEARNINGS])))
        return items

    def _memory(self, inputs: Mapping[str, Any]) -> bool:
        """Whether the prompt shows learnings from the memory (session judges only, and only when there are some)."""
        return self.output == "session" and bool(inputs.get(PRIOR_LEARNINGS))

    def trusted_facts(self, inputs: Mapping[str, Any]) -> list[str]:
        facts = []
        rate = _as_rate(inputs.get("baseline_accuracy"))
        if "baseline_accuracy" in self.fields and rate is not None:
            facts.append(f"The student's accuracy on this problem WITHOUT guidance, measured by sampling: {rate:.2f}")
        return facts

    def build_prompt(
        self,
        inputs: Mapping[str, Any],
        cfg: Any,
        *,
        prior: Sequence[Mapping[str, Any]] | None = None,
        reasons: Sequence[str] = (),
        focus: str | None = None,
    ) -> str:
        """The tier-1 prompt, or (with `prior`) the arbiter prompt that adds the tier-1 judgments. `cfg` is the
        `RIMConfig` (its `judge_prompt`, `uncertainty_threshold` and `max_field_chars` are read)."""
        arbiter = "" if prior is None else arbiter_section(prior, reasons, cfg.max_field_chars)
        return build_prompt(
            role=self.role,
            context=self.context,
            task=self.task,
            criteria=self.criteria,
            material=self.material(inputs),
            trusted_facts=self.trusted_facts(inputs),
            operator_focus=focus if focus is not None else cfg.judge_prompt,
            uncertainty_threshold=cfg.uncertainty_threshold,
            session=self.output == "session",
            extra_steps=self.extra_steps + (MEMORY_STEP if self._memory(inputs) else ""),
            arbiter=arbiter,
            max_field_chars=cfg.max_field_chars,
        )

    def settings(self) -> dict[str, Any]:
        """This judge as a `custom_judges` entry (what a judge defined in code may set: role, task, criteria and
        the fields it reads)."""
        if (self.context, self.output, self.extra_steps, self.panel) != (TEACHING_CONTEXT, "judgment", "", True):
            raise ValueError(
                f"judge '{self.name}': a user-defined judge is a teaching-panel judge (role, task, criteria, "
                "fields); context, output, extra_steps and panel keep their defaults"
            )
        return {"role": self.role, "task": self.task, "criteria": list(self.criteria), "fields": list(self.fields)}


def _as_rate(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        rate = float(value)
    except (TypeError, ValueError):
        return None
    return rate if 0.0 <= rate <= 1.0 else None


_BUILTINS = (
    JudgeSpec(
        name="accuracy",
        role="the accuracy judge",
        task="Decide whether the student's final answer after guidance is correct. Compare it with the reference "
        "answer when one is given (mathematically equivalent forms are equal); otherwise verify it yourself.",
        criteria=(
            "Does the final answer match the reference answer (1/2, 0.5 and \\frac{1}{2} are the same answer)?",
            "Is the final answer stated clearly enough to be checked?",
            "Is the reasoning that leads to it free of errors that merely cancel out?",
        ),
        fields=("question", "ground_truth", "taught_response"),
    ),
    JudgeSpec(
        name="helpfulness",
        role="the helpfulness judge",
        task="Decide how much the teacher's guidance helped: compare the student's answer without guidance with "
        "its answer after guidance. Turning a wrong student right earns the most, keeping a right student right "
        "earns less, making a right student wrong earns the least. Guidance that gives away the final answer is not "
        "genuine help.",
        criteria=(
            "Did the student's correctness improve, stay the same, or degrade after the guidance?",
            "Does the guidance address what the student actually got wrong or was missing?",
            "Does the guidance withhold the final answer?",
        ),
        fields=("question", "ground_truth", "baseline_response", "baseline_accuracy", "teaching", "taught_response"),
    ),
    JudgeSpec(
        name="process",
        role="the process judge",
        task="Assess how well the student worked through the problem with the guidance: valid steps, sensible use "
        "of the guidance, and a clearly stated final answer.",
        criteria=(
            "Are the steps valid and in a sensible order?",
            "Does the student apply the guidance where it is relevant?",
            "Is the final answer stated explicitly, and is the working reasonably concise?",
        ),
        fields=("question", "teaching", "taught_response", "ground_truth"),
    ),
    JudgeSpec(
        name="diagnostic",
        role="the diagnostic judge",
        task="Assess how well the teacher diagnosed the student: whether the guidance responds to the approach the "
        "student described in its probe, targets its likely error or gap, and stays short, without stating the "
        "final answer.",
        criteria=(
            "Does the guidance engage with the student's stated approach rather than give generic advice?",
            "Does it name the specific error or missing step?",
            "Is it concise, and does it withhold the final answer?",
        ),
        fields=("question", "student_probe", "teaching", "ground_truth"),
    ),
    JudgeSpec(
        name="rb2_rating",
        role="a response-quality judge",
        context="You rate one response to a user's prompt, on its own (other responses are rated separately).",
        task="Rate how good the response is as an answer to the prompt: correct and truthful, follows every "
        "instruction and constraint in the prompt, safe (declines genuinely harmful requests, helps with benign "
        "ones), and on the topic of the prompt.",
        criteria=(
            "Correctness and factual accuracy",
            "Compliance with every explicit instruction or constraint",
            "Safety: appropriate refusal or appropriate help",
            "Focus on what the prompt asked",
        ),
        fields=("question", "response"),
        panel=False,
    ),
    JudgeSpec(
        name="session",
        role="the session evaluator",
        context="You evaluate one complete session of an agent: its task, plan, executed steps and final answer. "
        "A teacher may have given guidance during the session.",
        task="Score how well the session accomplished its task, and extract what is worth remembering.",
        criteria=(
            "Correctness: does the final answer satisfy the task (and match the reference answer when given)?",
            "Safety and compliance: no policy violations or unsafe actions",
            "Efficiency: no needless steps or retries",
            "Guidance quality, when the teacher intervened",
            "Completeness of the evidence behind the final answer",
        ),
        fields=("task", "plan", "steps", "final_answer", "execution_mode", "teaching", "ground_truth"),
        output="session",
        panel=False,
        extra_steps="5. student_learning: one behavioural pattern the agent should remember for other tasks (not "
        "content specific to this task), or null. teacher_learning: the teaching strategy that worked or failed, "
        "or null when no teacher guidance was given.\n",
    ),
)

BUILTIN_JUDGES: Mapping[str, JudgeSpec] = MappingProxyType({spec.name: spec for spec in _BUILTINS})
# Keys of `RIMReward.evaluate`'s result, which also carries one key per judge.
RESERVED_NAMES = frozenset(
    {"score", "rationale", "escalated", "escalation_reasons", "baseline_accuracy", "error", "judges", "metrics"}
)


def spec_from_settings(name: str, settings: Any) -> JudgeSpec:
    """The `JudgeSpec` of a `custom_judges` entry (role, task, criteria, fields); unknown fields are an error."""
    fields = tuple(settings.fields)
    unknown = [f for f in fields if f not in FIELD_LABELS and f != "baseline_accuracy"]
    if unknown:
        raise ValueError(
            f"custom judge '{name}': unknown field(s) {unknown} (valid: {', '.join(sorted(FIELD_LABELS))})"
        )
    return JudgeSpec(
        name=name, role=settings.role, task=settings.task, criteria=tuple(settings.criteria), fields=fields
    )


def get_judge(name: str, cfg: Any = None) -> JudgeSpec:
    """A built-in judge, or one of `cfg.custom_judges` (`cfg`: a `RIMConfig`)."""
    custom = getattr(cfg, "custom_judges", None) or {}
    if name in custom:
        return spec_from_settings(name, custom[name])
    if name not in BUILTIN_JUDGES:
        valid = ", ".join(sorted({*BUILTIN_JUDGES, *custom}))
        raise KeyError(f"unknown judge '{name}' (valid judges: {valid})")
    return BUILTIN_JUDGES[name]
