"""`atlas rim session` (whole sessions judged by the session evaluator, one judgment per line, bad lines refused) and
the learning memory (written once per distinct learning, task and judge configuration; read back into the next
run's judge prompt; listed by `atlas rim memory`; intact after a killed or concurrent writer)."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from atlas.core.errors import InputError
from atlas.rim.backends.scripted import judgment_json
from atlas.rim.judges import MEMORY_LABEL
from atlas.rim.memory import DEFAULT_MEMORY_PATH, Learning, LearningMemory
from tests.faults import child_env
from tests.rim_helpers import FakeJudgeServer, Reply
from tests.test_rim_cli import CONFIG, rim, summary, write_jsonl

SPEED = {
    "id": "speed",
    "task": "A train travels 120 km in 2 hours. What is its average speed in km/h?",
    "plan": {"steps": ["divide distance by time"]},
    "steps": ["distance = 120 km", "time = 2 h", "speed = 120 / 2 = 60"],
    "final_answer": "60",
    "execution_mode": "paired",
    "teaching": "Average speed is total distance over total time.",
    "ground_truth": "60",
}
WRONG = {"task": "What is 7 * 8?", "steps": ["7 * 8 = 54"], "final_answer": "54", "ground_truth": "56"}
UNCHECKED = {"task": "Name a prime number above 10.", "steps": ["11 is prime"], "final_answer": "11"}
OUTPUT_KEYS = {"principles", "score", "rationale", "uncertainty", "student_learning", "teacher_learning", "escalated",
               "escalation_reasons", "error", "details", "line", "task", "learnings_in_prompt"}  # fmt: skip


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def offline(tmp_path: Path, *extra: str) -> list[str]:
    return ["--config", CONFIG, "--set", f"cache.path={tmp_path / 'cache.sqlite'}", *extra]


# ------------------------------------------------------------------ the command, offline judge


def test_session_judges_every_line_with_the_documented_fields(tmp_path, capsys):
    source = write_jsonl(tmp_path / "sessions.jsonl", [SPEED, WRONG, "", UNCHECKED])
    memory = tmp_path / "memory.sqlite"
    code = rim("session", "--input", str(source), "--output", str(tmp_path / "judged.jsonl"), "--memory", str(memory),
               *offline(tmp_path))  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    rows = read_jsonl(tmp_path / "judged.jsonl")
    assert [r["line"] for r in rows] == [1, 2, 4] and rows[0]["id"] == "speed" and "id" not in rows[1]
    for row in rows:
        assert set(row) - {"id"} == OUTPUT_KEYS
        assert 2 <= len(row["principles"]) <= 3
        assert sum(p["weight"] for p in row["principles"]) == pytest.approx(1.0)
        assert 0.0 <= row["score"] <= 1.0 and 0.0 <= row["uncertainty"] <= 1.0 and row["rationale"]
        assert row["details"]["calls"] and row["learnings_in_prompt"] == 0  # the memory was empty
    speed, wrong, unchecked = rows
    assert speed["score"] > 0.9 and "followed to a correct answer" in speed["teacher_learning"]
    assert wrong["score"] < 0.5 and "Check the final answer" in wrong["student_learning"]
    assert wrong["teacher_learning"] is None  # no guidance, nothing for the teacher
    assert unchecked["escalated"] and unchecked["escalation_reasons"] == ["uncertainty"]
    assert unchecked["details"]["source"] == "arbiter"
    numbers = summary(out)
    assert numbers["sessions"] == "3" and numbers["judged"] == "3" and numbers["failed"] == "0"
    assert numbers["learnings_added"] == "2" and numbers["escalation_rate"] == "0.333"
    assert numbers["memory"] == str(memory)


def test_no_audit_and_no_memory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    source = write_jsonl(tmp_path / "sessions.jsonl", [WRONG])
    assert rim("session", "--input", "sessions.jsonl", "--output", "judged.jsonl", "--no-memory", "--no-audit",
               *offline(tmp_path)) == 0  # fmt: skip
    [row] = read_jsonl(tmp_path / "judged.jsonl")
    assert "calls" not in row["details"] and row["student_learning"]
    assert summary(capsys.readouterr().out)["memory"] == "off"
    assert not (tmp_path / DEFAULT_MEMORY_PATH).exists() and source.exists()


def test_the_default_memory_path_is_the_one_documented():
    from atlas.cli.rim import MEMORY_DEFAULT

    assert str(DEFAULT_MEMORY_PATH) == MEMORY_DEFAULT
    assert "`.atlas/rim_memory.sqlite`" in (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{not json", "line 2: not valid JSON (Expecting property name enclosed in double quotes)"),
        ("[1, 2]", "line 2: expected a JSON object"),
        (json.dumps({"final_answer": "3"}), "line 2: field 'task': Field required"),
        (json.dumps({"task": ""}), "line 2: field 'task': String should have at least 1 character"),
        (json.dumps({"task": "t", "steps": "one step"}), "line 2: field 'steps': Input should be a valid list"),
        (json.dumps({"task": "t", "final_answer": 3}), "line 2: field 'final_answer': Input should be a valid string"),
        (json.dumps({"task": "t", "answer": "3"}), "line 2: field 'answer': Extra inputs are not permitted"),
        (json.dumps({"task": "t", "id": [1]}), "line 2: field 'id': must be a string or an integer"),
        (b'{"task": "caf\xe9"}', "line 2: not UTF-8 text"),
    ],
)  # fmt: skip
def test_a_bad_line_is_refused_naming_file_line_and_field(tmp_path, line, expected):
    source = tmp_path / "sessions.jsonl"
    source.write_bytes(
        json.dumps(SPEED).encode() + b"\n" + (line if isinstance(line, bytes) else line.encode()) + b"\n"
    )
    output, memory = tmp_path / "judged.jsonl", tmp_path / "memory.sqlite"
    output.write_text("the previous output\n")
    with pytest.raises(InputError) as err:
        rim("session", "--input", str(source), "--output", str(output), "--memory", str(memory), *offline(tmp_path))
    assert str(err.value).splitlines() == [f"{source}: {expected}"]
    assert output.read_text() == "the previous output\n"  # nothing written, nothing judged, no memory made
    assert not memory.exists() and not (tmp_path / "cache.sqlite").exists()


def test_every_bad_line_is_listed_at_once(tmp_path):
    source = write_jsonl(tmp_path / "s.jsonl", [{"task": ""}, SPEED, "{", {"task": "t", "colour": "red"}])
    with pytest.raises(InputError) as err:
        rim("session", "--input", str(source), "--output", str(tmp_path / "o.jsonl"), *offline(tmp_path))
    assert [line.split(": ")[1] for line in str(err.value).splitlines()] == ["line 1", "line 3", "line 4"]


# ------------------------------------------------------------------ the memory, read back by the next run

BLOCK = re.compile(rf"<<BEGIN {MEMORY_LABEL} (\w+)>>\n(.*?)\n<<END {MEMORY_LABEL} \1>>", re.S)


def session_server(learnings: dict[str, tuple[str | None, str | None]]) -> FakeJudgeServer:
    """An OpenAI-compatible judge that gives each session (found by its task in the prompt) its learnings."""

    def reply(request):
        for task, (student, teacher) in learnings.items():
            if task in request["prompt"]:
                return Reply(text=judgment_json(0.7, 0.05, student_learning=student, teacher_learning=teacher))
        raise AssertionError("unknown task")

    return FakeJudgeServer("openai", default=reply)


def model_args(server: FakeJudgeServer, tmp_path: Path, memory: Path) -> list[str]:
    model = f"{{provider: openai, model: judge-m, base_url: '{server.url}', retry: {{attempts: 1}}}}"
    return ["--config", CONFIG, "--set", f"small_model={model}", "--set", f"large_model={model}",
            "--set", f"cache.path={tmp_path / 'cache.sqlite'}", "--memory", str(memory)]  # fmt: skip


def test_the_next_run_reads_the_learnings_into_the_judge_prompt(tmp_path, capsys):
    memory = tmp_path / "memory.sqlite"
    first = write_jsonl(tmp_path / "first.jsonl", [SPEED, WRONG])
    later = write_jsonl(tmp_path / "later.jsonl", [UNCHECKED, SPEED])
    learnings = {
        SPEED["task"]: ("Verify units before answering.", "Naming the formula without the result worked."),
        WRONG["task"]: ("Recompute each product once before finishing.", None),
        UNCHECKED["task"]: ("verify   UNITS before answering", None),  # the first learning, spelled differently
    }
    with session_server(learnings) as server:
        args = model_args(server, tmp_path, memory)
        assert rim("session", "--input", str(first), "--output", str(tmp_path / "1.jsonl"), *args) == 0
        run1 = summary(capsys.readouterr().out)
        prompts1 = [r["prompt"] for r in server.requests]
        with LearningMemory(memory) as store:
            entries = store.entries()
        del server.requests[:]
        assert rim("session", "--input", str(later), "--output", str(tmp_path / "2.jsonl"), *args) == 0
        run2 = summary(capsys.readouterr().out)
        prompts2 = [r["prompt"] for r in server.requests]

    # run 1: an empty memory, the prompts as without one; three learnings recorded with what they came from
    assert len(prompts1) == 6 and not any(MEMORY_LABEL in p for p in prompts1)
    assert (run1["learnings_in_prompt"], run1["learnings_added"], run1["learnings_known"]) == ("0", "3", "0")
    assert {(e.kind, e.text, e.task, e.score) for e in entries} == {
        ("student", "Verify units before answering.", SPEED["task"], 0.7),
        ("teacher", "Naming the formula without the result worked.", SPEED["task"], 0.7),
        ("student", "Recompute each product once before finishing.", WRONG["task"], 0.7),
    }
    assert all(e.judge == "openai:judge-m / arbiter openai:judge-m" and len(e.config_sha256) == 16 for e in entries)
    assert {e.source for e in entries} == {f"{first}:1", f"{first}:2"} and entries[0].judged_at.endswith("+00:00")

    # run 2: every judge request carries the recorded learnings, the teacher's only where the teacher taught
    assert len(prompts2) == 6 and run2["learnings_in_prompt"] == "3"
    for prompt in prompts2:
        shown = json.loads(BLOCK.search(prompt).group(2))
        taught = SPEED["teaching"] in prompt
        kinds = sorted(item["kind"] for item in shown)
        assert kinds == (["student", "student", "teacher"] if taught else ["student", "student"])
        assert {"kind": "student", "learning": "Verify units before answering.", "sessions": 1} in shown
        assert "reuse its wording exactly" in prompt
    rows = read_jsonl(tmp_path / "2.jsonl")
    assert [r["learnings_in_prompt"] for r in rows] == [2, 3]

    # deduplicated: SPEED again under the same judges adds nothing; the re-spelled learning is a second session of
    # the first one, not a new learning
    assert (run2["learnings_added"], run2["learnings_known"]) == ("1", "2")
    with LearningMemory(memory) as store:
        assert len(store) == 4
        recent = store.recent(("student",))
    verify = next(g for g in recent if g["learning"] == "Verify units before answering.")  # the first wording
    assert verify["sessions"] == 2 and verify["last_task"] == UNCHECKED["task"]
    assert len(recent) == 2


def test_memory_context_zero_records_without_showing(tmp_path, capsys):
    memory = tmp_path / "memory.sqlite"
    source = write_jsonl(tmp_path / "s.jsonl", [WRONG])
    with session_server({WRONG["task"]: ("Recompute products.", None)}) as server:
        args = model_args(server, tmp_path, memory)
        assert rim("session", "--input", str(source), "--output", str(tmp_path / "1.jsonl"), *args) == 0
        assert rim("session", "--input", str(source), "--output", str(tmp_path / "2.jsonl"), *args,
                   "--memory-context", "0") == 0  # fmt: skip
        prompts = [r["prompt"] for r in server.requests]
    assert len(prompts) == 3 and not any(MEMORY_LABEL in p for p in prompts)  # run 2: all from the cache
    assert summary(capsys.readouterr().out)["cache_hits"] == "3"


def test_a_failed_judgment_records_nothing_and_fails_the_command(tmp_path, capsys):
    memory = tmp_path / "memory.sqlite"
    source = write_jsonl(tmp_path / "s.jsonl", [WRONG])
    with FakeJudgeServer("openai", default=Reply(status=400, payload={"error": "bad request"})) as server:
        code = rim("session", "--input", str(source), "--output", str(tmp_path / "o.jsonl"),
                   *model_args(server, tmp_path, memory))  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1 and "line 1: not judged:" in captured.err
    [row] = read_jsonl(tmp_path / "o.jsonl")
    assert row["score"] is None and row["student_learning"] is None and row["error"]
    with LearningMemory(memory) as store:
        assert len(store) == 0


def test_a_damaged_memory_is_refused_before_any_judge_call(tmp_path):
    memory = tmp_path / "memory.sqlite"
    memory.write_bytes(b"not a database, but someone's memory" * 100)
    source = write_jsonl(tmp_path / "s.jsonl", [WRONG])
    with session_server({WRONG["task"]: ("x", None)}) as server:
        with pytest.raises(InputError, match="not a readable learning memory"):
            rim("session", "--input", str(source), "--output", str(tmp_path / "o.jsonl"),
                *model_args(server, tmp_path, memory))  # fmt: skip
        assert server.requests == []
    assert memory.read_bytes().startswith(b"not a database") and not (tmp_path / "o.jsonl").exists()


# ------------------------------------------------------------------ the store under killed and concurrent writers


def learning(i: int, kind: str = "student") -> Learning:
    return Learning(kind=kind, text=f"learning {i}", task=f"task {i}", score=0.5, judged_at="2026-01-01T00:00:00+00:00",
                    judge="offline:rules-v1", config_sha256="0" * 16)  # fmt: skip


KILLED_AT_COMMIT = textwrap.dedent(
    """
    import os, signal, sys
    from atlas.rim.memory import Learning, LearningMemory

    class KillAtCommit:
        def __init__(self, conn):
            self.conn = conn
        def __getattr__(self, name):
            return getattr(self.conn, name)
        def execute(self, sql, *args):
            if sql == "COMMIT":
                os.kill(os.getpid(), signal.SIGKILL)
            return self.conn.execute(sql, *args)

    memory = LearningMemory(sys.argv[1])
    memory._conn = KillAtCommit(memory._conn)
    memory.append([Learning("student", f"half {i}", f"t{i}", 0.1, "now", "j", "c" * 16) for i in range(50)])
    """
)


def test_a_writer_killed_in_the_middle_of_an_append_leaves_the_memory_as_it_was(tmp_path):
    path = tmp_path / "memory.sqlite"
    with LearningMemory(path) as store:
        store.append([learning(i) for i in range(3)])
    child = subprocess.run([sys.executable, "-c", KILLED_AT_COMMIT, str(path)], env=child_env(),
                           capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert child.returncode == -9, child.stderr  # killed by SIGKILL with all 50 rows inserted, none committed
    with LearningMemory(path) as store:
        assert [e.text for e in store.entries()] == ["learning 0", "learning 1", "learning 2"]
        assert store.append([learning(3)]) == (1, 0)  # and it takes the next writer
    check = sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()
    assert check == ("ok",)


CONCURRENT_WRITER = textwrap.dedent(
    """
    import sys
    from atlas.rim.memory import Learning, LearningMemory

    name = sys.argv[2]
    with LearningMemory(sys.argv[1]) as memory:
        for i in range(40):
            shared = Learning("student", f"shared {i}", f"task {i}", 0.5, "now", "j", "c" * 16)
            own = Learning("teacher", f"{name} {i}", f"task {i}", 0.5, "now", "j", "c" * 16)
            memory.append([shared, own])
    """
)


def test_concurrent_writers_lose_nothing_and_duplicate_nothing(tmp_path):
    path = tmp_path / "memory.sqlite"
    writers = [subprocess.Popen([sys.executable, "-c", CONCURRENT_WRITER, str(path), name], env=child_env(),
                                stderr=subprocess.PIPE, text=True) for name in ("a", "b")]  # fmt: skip
    for writer in writers:
        assert writer.wait(timeout=120) == 0, writer.stderr.read()
    with LearningMemory(path) as store:
        texts = sorted(e.text for e in store.entries())
    assert texts == sorted([f"shared {i}" for i in range(40)] + [f"{n} {i}" for n in "ab" for i in range(40)])


# ------------------------------------------------------------------ `atlas rim memory`


def test_memory_lists_the_learnings(tmp_path, capsys):
    path = tmp_path / "memory.sqlite"
    with LearningMemory(path) as store:
        store.append([learning(1), learning(2, "teacher")])
        store.append([Learning("student", "Learning 1.", "another task", 0.9, "2026-02-01T00:00:00+00:00", "j", "1")])
    assert rim("memory", "--memory", str(path)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("student  sessions=2") and lines[0].endswith("learning 1") and "score=0.90" in lines[0]
    assert lines[-1] == f"2 learnings shown (3 observations) from {path}"
    assert rim("memory", "--memory", str(path), "--kind", "teacher", "--json") == 0
    [group] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert group["kind"] == "teacher" and group["learning"] == "learning 2" and group["sessions"] == 1
    assert rim("memory", "--memory", str(path), "--entries", "--limit", "2") == 0
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["task"] for e in entries] == ["task 2", "another task"] and set(entries[0]) == set(learning(0).to_dict())


def test_memory_of_a_missing_file_is_an_error_and_creates_nothing(tmp_path):
    with pytest.raises(InputError, match="no learning memory here"):
        rim("memory", "--memory", str(tmp_path / "nope.sqlite"))
    assert not (tmp_path / "nope.sqlite").exists()


def test_without_learnings_the_session_prompt_is_unchanged():
    from atlas.rim.config import load_rim_config
    from atlas.rim.judges import PRIOR_LEARNINGS, get_judge

    cfg, spec = load_rim_config(CONFIG), get_judge("session")
    inputs = {k: v for k, v in SPEED.items() if k != "id"}
    plain = spec.build_prompt(inputs, cfg)
    assert spec.build_prompt({**inputs, PRIOR_LEARNINGS: []}, cfg) == plain and MEMORY_LABEL not in plain
    shown = spec.build_prompt({**inputs, PRIOR_LEARNINGS: [{"kind": "student", "learning": "L", "sessions": 2}]}, cfg)
    assert MEMORY_LABEL in shown and shown != plain
    # a panel judge never shows the memory, even if the key is set
    accuracy = get_judge("accuracy")
    assert MEMORY_LABEL not in accuracy.build_prompt({"question": "q", PRIOR_LEARNINGS: [{"kind": "student"}]}, cfg)


def test_rim_score_reports_a_line_that_is_not_utf8_too(tmp_path):
    """`score` and `session` read JSON lines with the same reader (a non-UTF-8 byte was a traceback in `score`)."""
    from tests.rim_helpers import GOOD_ROW

    source = tmp_path / "in.jsonl"
    source.write_bytes(json.dumps(GOOD_ROW).encode() + b'\n{"question": "caf\xe9"}\n')
    with pytest.raises(InputError) as err:
        rim("score", "--input", str(source), "--output", str(tmp_path / "o.jsonl"), "--config", CONFIG)
    assert str(err.value) == f"{source}: row 2: not UTF-8 text"
