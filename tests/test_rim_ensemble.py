"""Escalation and aggregation of the two-tier ensemble, table-driven, with scripted backends."""

from __future__ import annotations

import asyncio
import json

import pytest

from atlas.llm.transport import BackendError
from atlas.rim.audit import Sample
from atlas.rim.backends.scripted import ScriptedBackend, judgment_json
from atlas.rim.cache import NullCache
from atlas.rim.calls import Runtime
from atlas.rim.config import RIMConfig
from atlas.rim.ensemble import decide, most_confident, run_judge
from atlas.rim.judges import get_judge
from atlas.rim.schema import parse_judgment
from tests.rim_helpers import GOOD_ROW


def sample(temperature, score=None, uncertainty=0.1):
    judgment = None if score is None else parse_judgment(judgment_json(score, uncertainty))
    return Sample(temperature, judgment, None if judgment else "failed")


@pytest.mark.parametrize(
    ("samples", "variance", "uncertainty", "escalate", "reasons", "selected"),
    [
        # agreement and confidence: the most confident sample wins
        ([sample(0.2, 0.8, 0.2), sample(0.5, 0.7, 0.05), sample(0.8, 0.9, 0.1)], 0.15, 0.3, False, (), 1),
        # population std of (0.25, 0.75) is exactly 0.25: escalate only when it EXCEEDS the threshold
        ([sample(0.2, 0.25), sample(0.5, 0.75)], 0.25, 0.3, False, (), 0),
        ([sample(0.2, 0.25), sample(0.5, 0.75)], 0.2499, 0.3, True, ("disagreement",), None),
        # any uncertainty above the threshold escalates; equal does not
        ([sample(0.2, 0.5, 0.25), sample(0.5, 0.5, 0.1)], 0.15, 0.25, False, (), 1),
        ([sample(0.2, 0.5, 0.26), sample(0.5, 0.5, 0.1)], 0.15, 0.25, True, ("uncertainty",), None),
        # both triggers at once
        ([sample(0.2, 0.0, 0.9), sample(0.5, 1.0, 0.1)], 0.15, 0.3, True, ("disagreement", "uncertainty"), None),
        # no valid sample
        ([sample(0.2), sample(0.5), sample(0.8)], 0.15, 0.3, True, ("no_valid_sample",), None),
        # invalid samples do not count towards the spread; one confident valid sample is enough
        ([sample(0.2), sample(0.5, 0.9, 0.1), sample(0.8)], 0.15, 0.3, False, (), 1),
        # ties on uncertainty go to the lowest temperature, whatever the order
        ([sample(0.8, 0.7, 0.1), sample(0.2, 0.6, 0.1), sample(0.5, 0.65, 0.1)], 0.15, 0.3, False, (), 1),
        # ties on uncertainty and temperature go to the earliest position
        ([sample(0.5, 0.7, 0.1), sample(0.5, 0.6, 0.1)], 0.15, 0.3, False, (), 0),
    ],
)
def test_decide(samples, variance, uncertainty, escalate, reasons, selected):
    decision = decide(samples, variance, uncertainty)
    assert decision.escalate is escalate
    assert decision.reasons == reasons
    assert decision.selected == selected
    assert len(decision.explanation) == len(reasons)


def test_tie_break_is_independent_of_completion_order():
    samples = [sample(0.8, 0.7, 0.1), sample(0.2, 0.6, 0.1), sample(0.5, 0.65, 0.1)]
    chosen = {samples[most_confident(samples)].temperature for _ in range(5)}
    reordered = list(reversed(samples))
    assert chosen == {reordered[most_confident(reordered)].temperature} == {0.2}


def by_temperature(replies, default=None):
    """Responder: tier-1 reply keyed by temperature (a str or an exception)."""

    def respond(request):
        value = replies.get(request.temperature, default)
        return value

    return respond


def run(spec_name, small, large, cfg=None, row=GOOD_ROW):
    cfg = cfg or RIMConfig()

    async def go():
        runtime = Runtime(cfg, small, large, NullCache())
        return await run_judge(get_judge(spec_name), row, runtime), runtime.usage

    return asyncio.run(go())


AGREE = {
    0.2: judgment_json(0.8, 0.1, "r02"),
    0.5: judgment_json(0.7, 0.05, "r05"),
    0.8: judgment_json(0.75, 0.1, "r08"),
}
SPLIT = {0.2: judgment_json(0.1, 0.1, "low"), 0.5: judgment_json(0.9, 0.1, "high"), 0.8: judgment_json(0.5, 0.1, "mid")}
FAIL = BackendError("HTTP 400: bad request", retryable=False, status=400)


def test_no_escalation_uses_most_confident_and_never_calls_the_arbiter():
    small = ScriptedBackend(by_temperature(AGREE))
    large = ScriptedBackend(lambda r: judgment_json(0.0, 0.0), model="large")
    result, usage = run("accuracy", small, large)
    assert (result.score, result.rationale, result.source) == (0.7, "r05", "tier1")
    assert not result.escalated and result.escalation_reasons == []
    assert len(small.requests) == 3 and large.requests == []
    assert sorted(r.temperature for r in small.requests) == [0.2, 0.5, 0.8]
    assert [c.tier for c in result.calls] == ["tier1"] * 3 and all(c.ok for c in result.calls)
    assert usage.calls == 3


def test_mean_selection():
    cfg = RIMConfig(aggregation={"tier1_selection": "mean"})
    result, _ = run("accuracy", ScriptedBackend(by_temperature(AGREE)), ScriptedBackend(lambda r: FAIL), cfg)
    assert result.score == pytest.approx(0.75) and result.source == "tier1_mean" and result.rationale == "r05"


def test_disagreement_escalates_and_the_arbiter_sees_tier1_judgments():
    small = ScriptedBackend(by_temperature(SPLIT))
    large = ScriptedBackend(lambda r: judgment_json(0.6, 0.05, "arbiter verdict"), model="large")
    result, _ = run("helpfulness", small, large)
    assert result.escalated and result.escalation_reasons == ["disagreement"]
    assert (result.score, result.rationale, result.source) == (0.6, "arbiter verdict", "arbiter")
    [request] = large.requests
    assert request.temperature == 0.3
    assert all(text in request.prompt for text in ('"low"', '"high"', '"mid"', "score std"))
    assert GOOD_ROW["taught_response"] in request.prompt  # the arbiter sees the full material
    assert request.context.tier == "arbiter" and len(request.context.prior) == 3
    assert [c.tier for c in result.calls] == ["tier1"] * 3 + ["arbiter"]


def test_uncertainty_escalates():
    replies = dict(AGREE) | {0.8: judgment_json(0.75, 0.6)}
    result, _ = run("process", ScriptedBackend(by_temperature(replies)), ScriptedBackend(lambda r: judgment_json(0.4)))
    assert result.escalation_reasons == ["uncertainty"] and result.score == 0.4


def test_no_valid_sample_escalates():
    small = ScriptedBackend(lambda r: FAIL)
    large = ScriptedBackend(lambda r: judgment_json(0.3, 0.2, "arbiter alone"))
    result, usage = run("accuracy", small, large)
    assert result.escalation_reasons == ["no_valid_sample"] and result.score == 0.3
    assert all(s.error and "HTTP 400" in s.error for s in result.samples)
    assert "no first-tier evaluator produced a valid judgment" in large.requests[0].prompt
    assert usage.failed_calls == 3 and usage.retries == 0  # a 400 is not retried


@pytest.mark.parametrize(
    ("arbiter_reply", "reason"),
    [
        ("this is not json", "no valid judgment after 3 replies"),
        (FAIL, "arbiter call failed: HTTP 400"),
    ],
)
def test_arbiter_failure_gives_none_with_a_reason(arbiter_reply, reason):
    small = ScriptedBackend(by_temperature(SPLIT))
    large = ScriptedBackend(lambda r: arbiter_reply)
    result, _ = run("accuracy", small, large)
    assert result.score is None and result.source == "none" and result.escalated
    assert "arbiter failed" in result.error and reason in result.error
    assert [s.judgment.score for s in result.samples] == [0.1, 0.9, 0.5]  # the evidence is kept


def test_everything_failing_gives_none():
    result, _ = run("accuracy", ScriptedBackend(lambda r: FAIL), ScriptedBackend(lambda r: FAIL))
    assert result.score is None
    assert "no tier-1 sample produced a valid judgment" in result.error and "tier-1 errors" in result.error


def test_invalid_json_is_reasked_with_the_problem():
    replies = iter(['{"score": 2}', "not json at all", judgment_json(0.8, 0.1, "third time")])
    cfg = RIMConfig(temperatures=[0.5])
    small = ScriptedBackend(lambda r: next(replies))
    result, usage = run("accuracy", small, ScriptedBackend(lambda r: FAIL), cfg)
    assert result.score == 0.8 and result.rationale == "third time"
    assert len(small.requests) == 3 and usage.calls == 3
    assert "could not be used: principles: Field required" in small.requests[1].prompt
    assert "could not be used: the reply contains no JSON object" in small.requests[2].prompt
    assert [c.ok for c in result.calls] == [False, False, True]


def test_session_judgment_carries_learning_fields():
    reply = json.loads(judgment_json(0.9, 0.1)) | {"student_learning": "Verify units.", "teacher_learning": None}
    small = ScriptedBackend(lambda r: json.dumps(reply))
    row = {"task": "Convert 3 km to m", "steps": ["multiply by 1000"], "final_answer": "3000 m"}
    result, _ = run("session", small, small, row=row)
    assert result.score == 0.9 and result.student_learning == "Verify units." and result.teacher_learning is None
