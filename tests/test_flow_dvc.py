"""The real orchestration at the tiny preset: the Prefect flow `atlas` (a session-scoped test server) and `atlas run`
driving DVC through the one pipeline driver, MLflow parent/nested runs, the registry, DVC experiments for another
preset or overrides (the checkout's params.yaml untouched), the DVC remote and the README's recovery recipe.

Two projects, each a committed git + DVC repo like a fresh clone: `workspace` (a complete tiny params.yaml that may
promote) runs the pipeline in the checkout; `cpu_checkout` (the repository's own params.yaml, preset cpu, with a cpu
champion in the registry) runs the README's `--param preset=tiny` example."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, git_commit, make_project


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


def _mlflow_runs():
    from mlflow import MlflowClient

    from atlas.ops.tracking import experiment_id, get_mlflow

    get_mlflow()
    client = MlflowClient()
    return client, client.search_runs([experiment_id("atlas")])


def _dvc(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True, check=check)


def _tiny_params(*overrides: str) -> str:
    from atlas.config import load_config, params_yaml

    return params_yaml(load_config(None, preset="tiny", overrides=list(overrides)))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, prefect_server):
    """A committed tiny project (complete params.yaml, promotion allowed, a local DVC remote) where the flow ran
    once: (root, flow result, env)."""
    from flows.train import atlas_flow

    root = make_project(tmp_path_factory.mktemp("ws") / "p", params=_tiny_params("gate.promote=true"), commit=True)
    state = tmp_path_factory.mktemp("ws-state")
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlruns.db'}",
        "ATLAS_ARTIFACT_ROOT": str(state / "mlartifacts"),
        "DVC_SITE_CACHE_DIR": str(state / "dvc-site"),
        "ATLAS_PROGRESS_SECONDS": "0",  # every progress line, however short the tiny stages are
    }
    saved_cwd, saved_env = os.getcwd(), dict(os.environ)
    os.chdir(root)
    os.environ.update(env)
    try:
        _dvc("remote", "add", "-d", "local", str(state / "storage"))
        git_commit(root, "a DVC remote")
        state_ = atlas_flow(return_state=True)
        assert state_.is_completed(), state_.message
        yield root, state_.result(), env
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


@pytest.fixture
def in_workspace(workspace, monkeypatch):
    root, result, env = workspace
    monkeypatch.chdir(root)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return root, result


def test_flow_runs_stages_gate_and_register(in_workspace):
    from atlas.ops import registry

    root, result = in_workspace
    assert all(result[s] == "ran" for s in ("config", "models", "ingest", "validate", "probe", "sft", "grpo"))
    assert result["gate"] == "passed" and result["register"]["outcome"] == "registered"
    client, runs = _mlflow_runs()
    parents = [r for r in runs if r.data.tags.get("atlas.pipeline") == "true"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = {
        r.data.tags.get("atlas.stage") for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id
    }
    assert {"models", "ingest", "validate", "probe", "sft", "grpo", "evaluate", "gate", "register"} <= children
    champion = registry.alias_version("atlas-teacher", "champion")
    assert champion is not None and champion.tags["preset"] == "tiny" and champion.tags["dvc_pushed"] == "true"

    from atlas.config import load_config
    from atlas.ops.results import results_markdown

    table = results_markdown(load_config())
    assert parents[0].info.run_id in table and "gate passed" in table and "Non-Degradation" in table
    # issue 14 item 4: the pipeline run carries the headline per teacher and the paired differences, for Compare
    evaluated = json.loads((root / "reports/eval.json").read_text())
    headline = parents[0].data.metrics
    for teacher in ("sft", "grpo"):
        overall = evaluated["teachers"][teacher]["overall"]
        for key in ("taught_accuracy", "accuracy_delta", "accuracy_delta_ci_low", "accuracy_delta_ci_high",
                    "non_degradation_rate", "completion_rate_taught", "teaching_tokens"):  # fmt: skip
            assert headline[f"{teacher}.{key}"] == pytest.approx(overall[key]), key
    assert headline["paired.grpo-sft.difference"] == pytest.approx(evaluated["paired"]["grpo-sft"]["difference"])
    assert headline["gate.passed"] == 1.0
    assert client.get_experiment(parents[0].info.experiment_id).tags["mlflow.experimentKind"] == (
        "custom_model_development"
    )
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    outs = {o["path"] for stage in lock["stages"].values() for o in stage.get("outs", [])}
    assert {
        "data/processed",
        "data/probe",
        "data/checkpoints/sft",
        "data/checkpoints/grpo",
        "reports/eval.json",
    } <= outs
    tracked = subprocess.run(["git", "ls-files", "reports", "data/config"], capture_output=True, text=True).stdout
    assert "eval.json" not in tracked and "models.json" not in tracked  # DVC tracks them, git does not


def _first_flow_run():
    """The workspace's flow run (the module's first run of the flow `atlas`)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        named = FlowFilter(name=FlowFilterName(any_=["atlas"]))
        return client.read_flow_runs(flow_filter=named, sort=FlowRunSort.START_TIME_ASC, limit=1)[0]


def test_stage_logs_and_progress_stream_into_the_prefect_task_logs(in_workspace):
    """Issue 14 item 6: each line a stage logs (its progress lines included) lands in the logs of the Prefect task
    that runs the stage: probe, SFT, GRPO and evaluation say how far they are."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    flow_run = _first_flow_run()
    by_task: dict[str, list[str]] = {}
    with get_client(sync_client=True) as client:
        where = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id]))
        logs, offset = [], 0
        while page := client.read_logs(log_filter=where, limit=200, offset=offset):
            logs, offset = logs + page, offset + len(page)
        names = {t: client.read_task_run(t).name for t in {log.task_run_id for log in logs} - {None}}
    for log in logs:
        by_task.setdefault(names.get(log.task_run_id, "(flow)"), []).append(log.message)
    expected = {
        "dvc repro probe": r"atlas\.progress: student: baseline x2: (\d+)/\1 \(100%\) in \d+s",
        "dvc repro sft": r"atlas\.progress: sft steps: 3/3 \(100%\) in \d+s",
        "dvc repro grpo": r"atlas\.progress: grpo steps: 3/3 \(100%\) in \d+s",
        "dvc repro evaluate": r"atlas\.progress: evaluate \[eval\]: (\d+)/\1 \(100%\) in \d+s",
    }
    for task, pattern in expected.items():
        assert any(re.search(pattern, m) for m in by_task.get(task, [])), (task, sorted(by_task))
    assert any("atlas.progress: evaluate [eval]: " in m and "ETA" in m for m in by_task["dvc repro evaluate"])


def test_the_flow_run_ends_with_the_results_artifact(in_workspace):
    """Issue 14 item 6: the flow run's markdown artifact `atlas-results` is the table `atlas results` prints, with
    where to open the pipeline's MLflow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from atlas.config import load_config
    from atlas.ops.results import results_markdown

    flow_run = _first_flow_run()
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["atlas-results"]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id])
            )
        )
    assert len(found) == 1 and found[0].type == "markdown"
    _, runs = _mlflow_runs()
    parent = min((r for r in runs if r.data.tags.get("atlas.pipeline") == "true"), key=lambda r: r.info.start_time)
    text = found[0].data
    assert results_markdown(load_config(), parent.info.run_id) in text and "gate passed" in text
    page = f"#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}"
    assert f"`mlflow ui --backend-store-uri {os.environ['MLFLOW_TRACKING_URI']} " in text and page in text


def test_dvc_plots_show_renders_the_evaluation_plots(in_workspace, tmp_path):
    """Issue 14 item 5: dvc.yaml's top-level `plots:` renders with `dvc plots show` after a run."""
    root, _ = in_workspace
    shown = json.loads(_dvc("plots", "show", "--json", "--out", str(tmp_path / "images")).stdout)
    assert not shown.get("errors"), shown["errors"]
    for plot in ("reports/accuracy_by_kind.png", "reports/non_degradation.png"):
        [image] = shown["data"][plot]
        assert image["type"] == "image" and Path(image["url"]).stat().st_size > 1000
        assert Path(image["url"]).read_bytes() == (root / plot).read_bytes()
    html = _dvc("plots", "show", "--out", str(tmp_path / "html"))
    assert (tmp_path / "html" / "index.html").exists(), html.stdout
    # the data plots: GRPO per step, the teachers side by side, per-kind accuracy (records the stages wrote)
    data = {name: plot for name, plot in shown["data"].items() if not name.endswith(".png")}
    assert set(data) == {
        "GRPO reward and KL per step",
        "GRPO taught accuracy and degradation per step",
        "Taught accuracy by teacher",
        "Non-degradation rate by teacher",
        "Taught accuracy by kind and teacher",
    }, set(data)
    for name, [plot] in data.items():
        values = plot["content"]["data"]["values"]
        assert values, name
    teachers = json.loads((root / "reports/plots/teachers.json").read_text())
    evaluated = json.loads((root / "reports/eval.json").read_text())["teachers"]
    assert len(teachers) == len(evaluated) and {"student alone", "SFT teacher", "GRPO teacher"} <= {
        t["teacher"] for t in teachers
    }
    curve = json.loads((root / "reports/plots/grpo_curve.json").read_text())
    assert [r["step"] for r in curve] == list(range(1, len(curve) + 1)) and "reward" in curve[0]


def test_dvc_metrics_show_fits_a_screen_and_carries_the_gate_verdict(in_workspace):
    """Issue 14 item 5: `dvc metrics show` printed every key of every stage report (300 kB on one line at cpu);
    now the evaluation's headline and the gate's verdict."""
    shown = _dvc("metrics", "show")
    lines = shown.stdout.splitlines()
    assert len(lines) <= 4 and max(map(len, lines)) <= 230, shown.stdout
    metrics = json.loads(_dvc("metrics", "show", "--json").stdout)
    [(_, rev)] = metrics.items()
    files = rev["data"]
    assert set(files) == {"reports/headline.json", "reports/gate_verdict.json"}, set(files)
    assert files["reports/gate_verdict.json"]["data"]["gate"]["passed"] is True
    head = files["reports/headline.json"]["data"]
    eval_json = json.loads(Path("reports/eval.json").read_text())
    assert head["grpo"]["accuracy"] == round(eval_json["teachers"]["grpo"]["overall"]["taught_accuracy"], 4)
    assert (
        "teachers"
        in json.loads(_dvc("metrics", "show", "--json", "reports/eval.json").stdout)[""]["data"]["reports/eval.json"][
            "data"
        ]
    )  # every metric stays one command away


def test_a_second_run_skips_from_dvc_state_and_registers_nothing_new(in_workspace, monkeypatch):
    """Issue 13 items 4 and 7, through `atlas run` (the same driver as the flow)."""
    from mlflow import MlflowClient

    from atlas.cli import main
    from atlas.ops import pipeline, registry

    champion = registry.alias_version("atlas-teacher", "champion")
    seen = []
    monkeypatch.setattr(pipeline, "_dvc", lambda args, *a, **k: seen.append(args))  # nothing may need DVC to run
    assert main(["run"]) == 0
    assert seen == []  # every stage was up to date by `dvc status`
    assert registry.alias_version("atlas-teacher", "champion").version == champion.version
    assert len(MlflowClient().search_model_versions("name = 'atlas-teacher'")) == 1
    assert registry.alias_version("atlas-teacher", "previous") is None


def test_atlas_run_does_not_register_a_failed_candidate(in_workspace, capsys):
    """Issue 13 item 4: `atlas run` used to register a candidate whose gate failed."""
    from mlflow import MlflowClient

    from atlas.cli import main

    params = Path("params.yaml")
    text = params.read_text()
    try:
        params.write_text(text.replace("min_accuracy_delta: -1.0", "min_accuracy_delta: 5.0"))
        assert main(["run", "--fail-on-gate"]) == 1
    finally:
        params.write_text(text)
    err = capsys.readouterr().err
    assert "FAIL accuracy_delta" in err and "nothing was registered" in err
    assert len(MlflowClient().search_model_versions("name = 'atlas-teacher'")) == 1


def test_recovery_recipe_brings_back_the_registered_weights(in_workspace, tmp_path):
    """Issue 13 item 8: `git clone`, `git checkout <commit>`, `dvc pull` restore the champion's exact checkpoint."""
    from atlas.llm.models import checkpoint_hash
    from atlas.ops import registry

    root, _ = in_workspace
    champion = registry.alias_version("atlas-teacher", "champion")
    commit = git_commit(root, "the run's dvc.lock")
    assert champion.tags["git_dirty"] in ("true", "false")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
    os.chdir(clone)
    subprocess.run(["git", "checkout", "-q", commit], check=True)
    done = _dvc("pull", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert checkpoint_hash(clone / "data/checkpoints/grpo") == champion.checkpoint_sha256
    assert (clone / "dvc.lock").read_text() == (root / "dvc.lock").read_text()


def test_overrides_run_as_a_dvc_experiment_and_take_effect(in_workspace):
    """Issue 13 items 10 and 11: `atlas run --set` trains what MLflow records; the README's `dvc exp run
    --set-param grpo.max_steps=...` works on the complete params.yaml; the checkout is left as it was."""
    from atlas.cli import main

    root, _ = in_workspace
    before = {name: (root / name).read_bytes() for name in ("params.yaml", "dvc.lock")}
    weights = (root / "data/checkpoints/grpo/model.safetensors").read_bytes()
    assert main(["run", "--set", "grpo.max_steps=2"]) == 0
    client, runs = _mlflow_runs()
    latest = max((r for r in runs if r.data.tags.get("atlas.pipeline") == "true"), key=lambda r: r.info.start_time)
    grpo = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == latest.info.run_id
            and r.data.tags.get("atlas.stage") == "grpo"]  # fmt: skip
    assert latest.data.params["grpo.max_steps"] == "2" and [r.data.params["grpo.max_steps"] for r in grpo] == ["2"]
    assert client.get_run(grpo[0].info.run_id).data.metrics["grpo_summary.steps"] == 2
    assert {name: (root / name).read_bytes() for name in before} == before
    assert (root / "data/checkpoints/grpo/model.safetensors").read_bytes() == weights
    # the README's command, as written (it runs in the workspace: DVC's run cache has this configuration already)
    try:
        done = _dvc("exp", "run", "--set-param", "grpo.max_steps=2", check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert yaml.safe_load((root / "params.yaml").read_text())["grpo"]["max_steps"] == 2
    finally:
        for name, data in before.items():
            (root / name).write_bytes(data)
        _dvc("checkout", "--force")


def test_touching_code_or_the_rim_config_reruns_the_stages_that_use_it(in_workspace):
    """Issue 13 item 9 and the acceptance: DVC sees a change to any file a stage runs, and to the RIM config."""
    root, _ = in_workspace
    answers = root / "atlas/teaching/answers.py"
    rim = root / "configs/rim_config.yaml"
    saved = answers.read_text(), rim.read_text()
    try:
        answers.write_text(saved[0] + "\n# touched\n")
        changed = set(json.loads(_dvc("status", "--json").stdout))
        assert {"ingest", "validate", "probe", "sft", "grpo", "evaluate"} <= changed
        answers.write_text(saved[0])
        rim.write_text(saved[1].replace("variance_threshold: 0.15", "variance_threshold: 0.2"))
        assert set(json.loads(_dvc("status", "--json").stdout)) == {"config"}
        done = subprocess.run(["atlas", "config"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert {"grpo", "evaluate"} <= set(json.loads(_dvc("status", "--json").stdout))
    finally:
        answers.write_text(saved[0])
        rim.write_text(saved[1])
        subprocess.run(["atlas", "config"], capture_output=True, check=True)


def test_a_failed_run_leaves_the_incoming_data_to_retry(in_workspace):
    """Issue 13 item 6: the watcher's new content counts as trained only after a run succeeded on it. The run fails
    for a reason that is not the drop itself (a damaged drop is moved to rejected/ by ingest, issue 16): another
    `atlas ingest` holds the stage's lock."""
    from atlas.cli import main
    from atlas.config import load_config
    from atlas.core import locks, paths
    from atlas.data import incoming

    cfg = load_config()
    drop = Path(cfg.data.incoming_dir) / "more.jsonl"
    drop.write_text('{"problem": "What is 2 + 2?", "ground_truth": "4"}\n')
    try:
        changed, sha = incoming.check(cfg)
        assert changed and not incoming.check(cfg)[0]  # announced once
        with locks.hold(paths.LOCKS_DIR / "ingest.lock", "the test's `atlas ingest`"):
            assert main(["run"]) == 2  # the ingest stage finds its lock taken: the run fails
        assert drop.exists()
        assert incoming.check(cfg) == (True, sha)  # announced again: the data is retried, not forgotten
    finally:
        drop.unlink()


# -- the README's Prefect example after a cpu champion exists -------------------------------------------------------


def test_flow_with_another_preset_leaves_params_and_champion_alone(prefect_server, tmp_path, monkeypatch):
    """Issue 13 items 1 and 2 and the acceptance: `prefect deployment run atlas/train --param preset=tiny` after a
    cpu champion exists leaves `champion` and params.yaml unchanged."""
    import mlflow

    from atlas.config import load_config
    from atlas.ops import registry, tracking
    from atlas.stages import config as config_stage
    from flows.train import atlas_flow

    root = make_project(tmp_path / "p", params=(REPO / "params.yaml").read_text(), commit=True)
    monkeypatch.chdir(root)
    cpu = load_config()
    assert cpu.preset == "cpu"
    ckpt = tmp_path / "cpu-teacher"  # stands in for a trained cpu teacher: only its registry entry matters here
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    (ckpt / "model.safetensors").write_bytes(b"cpu weights")
    tracking.get_mlflow()
    config_stage.run(cpu)  # the pyfunc model records the run's section files; removed after: a fresh clone again
    with mlflow.start_run() as run:
        tags = {"checkpoint_sha256": "c" * 64, "preset": "cpu", "lineage": registry.lineage_id(cpu)}
        version = registry.register_checkpoint("atlas-teacher", ckpt, tags, run.info.run_id, run.info.artifact_uri)
    shutil.rmtree(root / "data/config")
    registry.promote("atlas-teacher", version)
    params_before = (root / "params.yaml").read_bytes()

    state = atlas_flow(preset="tiny", return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["experiment"].startswith("atlas-") and result["gate"] == "passed"
    assert result["register"]["outcome"] == "not registered"  # tiny never promotes unless asked
    assert (root / "params.yaml").read_bytes() == params_before and not (root / "dvc.lock").exists()
    assert registry.alias_version("atlas-teacher", "champion").version == version.version
    _, runs = _mlflow_runs()
    gate = next(r for r in runs if r.data.tags.get("atlas.stage") == "gate")
    assert gate.data.tags["atlas.preset"] == "tiny"
    report = json.loads((root / ".atlas/experiments" / result["experiment"] / "reports/gate.json").read_text())
    assert report["champion_version"] is None and "another lineage" in report["champion_note"]


# -- killing the driver -------------------------------------------------------------------------------------------


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_an_exited_process_not_yet_reaped_is_not_alive():
    """A killed stage whose parent died with it can linger as a zombie until init reaps it; its MLflow run is dead
    all the same (it stayed RUNNING after the kill test's driver was killed)."""
    import time

    from atlas.core import process

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    me = process.identity(child.pid)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].startswith(
        " Z"
    ):
        time.sleep(0.05)
    try:
        assert not process.alive(child.pid, me["start"])
    finally:
        child.wait()
    assert process.alive(os.getpid(), process.identity()["start"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killing_the_driver_kills_its_children_and_closes_its_runs(tmp_path, monkeypatch):
    """Issue 16 item 8: kill -9 of `atlas run` leaves no `dvc repro` or stage behind, and the MLflow runs it left
    RUNNING are marked KILLED at the next start."""
    import time

    from mlflow import MlflowClient

    from atlas.ops import tracking

    root = make_project(tmp_path / "p", commit=True)
    monkeypatch.chdir(root)
    driver = subprocess.Popen(["atlas", "run"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, stage = time.monotonic() + 240, None
    while time.monotonic() < deadline and stage is None:
        time.sleep(0.5)
        for pid in _descendants(driver.pid):
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(a.endswith(b"/atlas") for a in args) and b"probe" in args:
                stage = pid
    assert stage is not None, "the probe stage never started"
    time.sleep(3)  # let it open its MLflow run
    family = _descendants(driver.pid)
    driver.kill()
    driver.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(p) for p in family):
        time.sleep(0.2)
    assert not [p for p in family if _alive(p)], "children outlived the driver"
    tracking.get_mlflow()
    closed = tracking.close_dead_runs("atlas")
    statuses = {r.info.status for r in MlflowClient().search_runs([tracking.experiment_id("atlas")])}
    assert closed and "RUNNING" not in statuses
    shutil.rmtree(root / ".dvc" / "tmp", ignore_errors=True)
