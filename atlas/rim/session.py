"""Session-level evaluation: one judgment of a whole trajectory (task, plan, steps, final answer, execution mode,
optional teacher guidance), with 2-3 derived principles, a score, a rationale, an uncertainty, and the learning
fields `student_learning` / `teacher_learning`. It runs through the same two-tier ensemble as the other judges;
`focus_prompt` (or `judge_prompt`) from the config, or one passed per call, steers the criteria.

`learnings` (from the learning memory, `atlas.rim.memory`) are what earlier session evaluations recorded: the judge
sees them as one more data block and is asked to reuse a recorded wording when this session shows the same
pattern, so that the memory counts a recurring pattern once instead of under many phrasings. Teacher learnings are
only shown for a session in which the teacher gave guidance. Without learnings the prompt is exactly as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from atlas.core.errors import InputError
from atlas.rim.audit import JudgeResult
from atlas.rim.calls import Runtime
from atlas.rim.ensemble import run_judge
from atlas.rim.judges import PRIOR_LEARNINGS, get_judge


class SessionTrajectory(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1)
    plan: Any = None
    steps: list[Any] = Field(default_factory=list)
    final_answer: str = ""
    execution_mode: str = "auto"
    teaching: str | None = None
    ground_truth: str | None = None


def parse_trajectory(data: Mapping[str, Any] | SessionTrajectory, origin: str = "trajectory") -> SessionTrajectory:
    if isinstance(data, SessionTrajectory):
        return data
    try:
        return SessionTrajectory.model_validate(dict(data))
    except ValidationError as exc:
        problems = [f"{origin}: field '{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors()]
        raise InputError("\n".join(problems)) from None


def relevant_learnings(trajectory: SessionTrajectory, learnings: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The learnings shown to the judge of this session: student learnings always, teacher learnings only when the
    teacher gave guidance; as kind, wording and the number of earlier sessions that showed it."""
    taught = bool((trajectory.teaching or "").strip())
    return [
        {"kind": item["kind"], "learning": item["learning"], "sessions": item.get("sessions", 1)}
        for item in learnings
        if item["kind"] == "student" or taught
    ]


async def evaluate_session(
    trajectory: Mapping[str, Any] | SessionTrajectory,
    runtime: Runtime,
    focus_prompt: str | None = None,
    learnings: Sequence[Mapping[str, Any]] = (),
) -> JudgeResult:
    parsed = parse_trajectory(trajectory)
    focus = focus_prompt if focus_prompt is not None else runtime.cfg.effective_focus()
    inputs = parsed.model_dump()
    shown = relevant_learnings(parsed, learnings)
    if shown:
        inputs[PRIOR_LEARNINGS] = shown
    return await run_judge(get_judge("session"), inputs, runtime, focus=focus)


def session_payload(result: JudgeResult, include_calls: bool = True) -> dict[str, Any]:
    """The documented session JSON, plus how it was reached (escalation, samples, calls)."""
    return {
        "principles": [p.model_dump() for p in result.principles],
        "score": result.score,
        "rationale": result.rationale,
        "uncertainty": result.uncertainty,
        "student_learning": result.student_learning,
        "teacher_learning": result.teacher_learning,
        "escalated": result.escalated,
        "escalation_reasons": result.escalation_reasons,
        "error": result.error,
        "details": result.to_dict(include_calls=include_calls),
    }
