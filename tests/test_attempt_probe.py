"""`protocol.probe: attempt`: the teacher sees the student's first attempt, which is the first baseline answer (no
extra generation), and with a greedy student an empty guidance reuses the cached baseline instead of asking again."""

from __future__ import annotations

import shutil

import pytest

from atlas.config import load_config
from atlas.llm.generation import Generation
from atlas.teaching.protocol import PROBE_INSTRUCTION, render_teacher_prompt, taught_answers
from atlas.teaching.records import BaselineSample, ProbeRecord


class ScriptedStudent:
    """The generator interface with canned answers: records every prompt it is asked to answer or score."""

    def __init__(self, answer: str = "2 + 3 = 5.\n<solution>5</solution>"):
        self.answer, self.generated, self.scored, self.calls = answer, [], [], 0

    def render(self, prompt):
        return prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)

    def generate(self, prompts, *, max_new_tokens, temperature, num_samples=1, seed=0, desc=None):
        self.generated.extend(self.render(p) for p in prompts)
        self.calls += len(prompts) * num_samples
        return [[Generation(self.answer, 9, False)] * num_samples for _ in prompts]

    def logprob(self, prompts, targets, desc=None):
        self.scored.extend(prompts)
        return [-1.0] * len(prompts)


def _probe(pid: str, correct: bool) -> ProbeRecord:
    return ProbeRecord(
        id=pid,
        split="train",
        kind="add",
        problem=f"Problem {pid}: Mia has 2 cards and finds 3 more. How many cards?",
        ground_truth="5",
        probe="2 + 3 = 6.\n<solution>6</solution>",
        baseline=(BaselineSample(f"cached {pid}", tokens=4, truncated=False, correct=correct, completed=True),),
        baseline_accuracy=float(correct),
        baseline_logp=-7.0,
    )


GREEDY = ["protocol.student_temperature=0", "protocol.baseline_k=1"]


@pytest.mark.parametrize(
    ("overrides", "teachings", "generated", "reused"),
    [
        (GREEDY, ["", "Add the amounts.", ""], 1, [0, 2]),
        (GREEDY, ["", "", ""], 0, [0, 1, 2]),
        (GREEDY, ["a", "b", "c"], 3, []),
        (["protocol.student_temperature=0.7"], ["", "Add the amounts.", ""], 3, []),  # sampled: never reused
    ],
)
def test_empty_guidance_to_a_greedy_student_reuses_the_baseline(project, overrides, teachings, generated, reused):
    cfg = load_config(overrides=overrides)
    probes = [_probe(f"p{i}", correct=i % 2 == 0) for i in range(3)]
    student = ScriptedStudent()
    samples, logps = taught_answers(cfg.protocol, student, probes, teachings, k=2, seed=0, label="t")
    assert len(student.generated) == len(student.scored) == generated
    for i, (outs, logp) in enumerate(zip(samples, logps, strict=True)):
        assert len(outs) == 2
        if i in reused:
            assert [o.text for o in outs] == [f"cached p{i}"] * 2 and logp == -7.0
        else:
            assert [o.text for o in outs] == [student.answer] * 2 and logp == -1.0


def test_unscored_answers_carry_no_likelihood(project):
    cfg = load_config(overrides=GREEDY)
    student = ScriptedStudent()
    probes = [_probe("a", True), _probe("b", False)]
    _, logps = taught_answers(cfg.protocol, student, probes, ["", "x"], 1, 0, "t", score=False)
    assert logps == [None, None] and not student.scored


def test_attempt_probe_is_the_first_baseline_answer_with_no_extra_generation(project):
    from atlas.teaching.protocol import probe_records

    cfg = load_config(overrides=[*GREEDY, "protocol.probe=attempt"])
    student = ScriptedStudent()
    problems = [{"id": "q1", "split": "train", "kind": "add", "problem": "1 + 4?", "ground_truth": "5"}]
    (record,) = probe_records(cfg.protocol, student, problems)
    assert record.probe == record.first_attempt.text == student.answer
    assert record.baseline_accuracy == 1.0
    assert len(student.generated) == 1 and PROBE_INSTRUCTION not in student.generated[0]

    approach = probe_records(load_config(overrides=GREEDY).protocol, student, problems)[0]
    assert any(PROBE_INSTRUCTION in p for p in student.generated[1:])  # the ATLAS probe is its own generation
    assert approach.probe == student.answer


@pytest.fixture
def teacher_tokenizer(tiny):
    from atlas.llm.models import load_tokenizer

    root, _ = tiny
    return load_tokenizer(root / "data/models/teacher")


@pytest.mark.parametrize(
    ("baseline_accuracy", "thinking", "teaching"),
    [(1.0, "The attempt is right.", ""), (0.0, "The attempt is wrong.", "Add the two amounts.")],
)
def test_sft_targets_judge_the_attempt(project, teacher_tokenizer, baseline_accuracy, thinking, teaching):
    from atlas.stages.sft import build_sft_rows

    cfg = load_config(overrides=["protocol.probe=attempt", "sft.targets=solved"])
    row = {"id": "r", "problem": "Mia has 2 cards and finds 3 more.", "teaching": "Add the two amounts.",
           "diagnosis": "The dataset's own diagnosis.", "approach": "The dataset's approach."}  # fmt: skip
    attempt = "2 + 3 = 6.\n<solution>6</solution>"
    probes = {"r": _train_probe("add", True, bool(baseline_accuracy), text=attempt)}
    (out,) = build_sft_rows([row], teacher_tokenizer, probes, cfg)
    assert out["completion"] == f"<thinking>{thinking}</thinking>\n<teaching>{teaching}</teaching>"
    assert "Student's attempt: 2 + 3 = 6." in out["prompt"]
    assert out["prompt"] == render_teacher_prompt(teacher_tokenizer, row["problem"], attempt, "attempt")


def test_greedy_student_alone_scores_exactly_its_baseline(tiny, tmp_path, monkeypatch):
    """With a greedy student the `none` teacher is the baseline itself: non-degradation is exactly 100%."""
    from atlas.llm.student import load_student
    from atlas.stages.evaluate import evaluate_teacher
    from atlas.stages.probe import load_probes
    from atlas.teaching.metrics import evaluate_all

    root, _ = tiny
    copy = tmp_path / "project"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("mlruns.db", "mlartifacts", "work", "checkpoints"))
    monkeypatch.chdir(copy)
    cfg = load_config(overrides=[*GREEDY, "evaluation.k=1"])
    student = load_student(cfg)
    probes = list(load_probes("eval").values())
    rows = evaluate_teacher(cfg, student, "none", None, probes)
    assert student.calls == 0
    assert [r["taught_correct"] for r in rows] == [[p.first_attempt.correct] for p in probes]
    metrics = evaluate_all({"none": rows}, bootstrap_samples=10, seed=0)["teachers"]["none"]["overall"]
    assert metrics["non_degradation_rate"] == 1.0


def _train_probe(kind: str, finished: bool, right: bool, text: str = "…") -> ProbeRecord:
    attempt = BaselineSample(text, tokens=9, truncated=not finished, correct=right, completed=finished)
    return ProbeRecord(
        id="t", split="train", kind=kind, problem="…", ground_truth="5", probe=text, baseline=(attempt,),
        baseline_accuracy=float(right), baseline_logp=-7.0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("group", "thinking", "teaches"),
    [
        (("add", True), "Attempts like this one are usually right.", False),  # 1 of 4 wrong
        (("add", False), "The attempt does not finish.", True),  # 2 of 2 wrong
        (("units", True), "Attempts like this one are usually wrong.", True),  # 3 of 4 wrong
    ],
)
def test_visible_rule_teaches_where_look_alike_attempts_are_mostly_wrong(project, group, thinking, teaches):
    from atlas.stages.sft import adaptive_target, wrong_rates

    probes = [_train_probe("add", True, r) for r in (True, True, True, False)]
    probes += [_train_probe("add", False, False)] * 2 + [_train_probe("units", True, r) for r in (False,) * 3 + (True,)]
    rates = wrong_rates(dict(enumerate(probes)))
    cfg = load_config(overrides=["protocol.probe=attempt", "sft.targets=visible", "sft.wrong_threshold=0.75"])
    # the verdict depends only on what the teacher sees, not on whether this very attempt was right
    for right in (True, False):
        assert adaptive_target(_train_probe(*group, right), cfg, rates) == (thinking, teaches)


def test_mixed_targets_put_both_moves_in_every_visible_situation(project):
    """`sft.targets: mixed`: SFT teaches the moves, not when to use them: every (kind, finished) group gets half
    hints and half silence, whatever the student got right, so GRPO's groups sample both and the reward decides."""
    from dataclasses import replace

    from atlas.stages.sft import adaptive_target, mixed_moves

    probes = {}
    for i, (kind, finished, right) in enumerate(
        [("add", True, r) for r in (True,) * 5 + (False,)] + [("units", True, False)] * 4 + [("rate", False, False)] * 3
    ):
        probe = _train_probe(kind, finished, right)
        probes[f"p{i}"] = replace(probe, id=f"p{i}", problem=f"problem {i}")
    cfg = load_config(overrides=["protocol.probe=attempt", "sft.targets=mixed"])
    moves = mixed_moves(probes)
    assert mixed_moves(probes) == moves  # deterministic
    for group, size in ((("add", True), 6), (("units", True), 4), (("rate", False), 3)):
        ids = [pid for pid, p in probes.items() if (p.kind, p.first_attempt.completed) == group]
        taught = sum(moves[pid] for pid in ids)
        assert len(ids) == size and taught == (size + 1) // 2  # both moves, half each (the odd one teaches)
    for pid, probe in probes.items():
        thinking, teach = adaptive_target(probe, cfg, {}, moves)
        assert teach == moves[pid]
        assert thinking == ("A hint may help this attempt." if teach else "This attempt may be fine as it is.")
