"""Screenshots of the MLflow UI in a real browser (issue 14, acceptance 3): a teaching interaction with its text, and
the SFT and GRPO teachers side by side.

    make screenshots STORE=/path/to/mlruns.db          # installs Playwright (and Debian's chromium), then this
    .venv/bin/python scripts/mlflow_screenshots.py --store /path/to/mlruns.db --out docs/img

The store is an MLflow sqlite database (a path or `sqlite:///...`). It is copied to a temporary folder first and the
server reads the copy, so MLflow never migrates or writes the original; the runs' artifacts are read where the store
says they are. The script starts `mlflow server` on 127.0.0.1 (a free port), opens with Playwright, in Debian's
chromium and a new empty profile:

- `teaching_trace.png`: the newest evaluate run's `eval/teaching_traces.json` table (MLflow's artifact view) at the
  page of one interaction (the GRPO teacher's first guided row, else any teacher's), the columns that are not text
  hidden, its guidance cell clicked so the Preview panel shows the whole text; `teaching_trace_rim.png`: the same
  row's RIM rationale;
- `compare_sft_grpo.png`: MLflow's Compare of the evaluate run's `teacher sft` and `teacher grpo` child runs (the
  same metric names: taught accuracy, delta and its interval, non-degradation, tokens, RIM), differences only;
- `compare_teachers.png`: the evaluate run's metrics of every teacher side by side (`taught_accuracy`);
- `grpo_rim_explanations.png`: the GRPO run's `grpo/rim_explanations.json` (each completion's guidance, taught
  answer and RIM judgment per logging step), when GRPO's reward had RIM in it;
- `experiment_runs.png`: the experiment in the model-training view: its runs, nested under pipelines;

and stops the server by its PID. It prints the PNGs it wrote.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TRACES = "eval/teaching_traces.json"
EXPLANATIONS = "grpo/rim_explanations.json"
MODEL_TRAINING = "workflowType=machine_learning"  # MLflow UI's query parameter for its model-training view
# Columns of the traces table hidden in the screenshot, so the texts of one interaction fit on the screen.
HIDDEN = ("kind", "ground_truth", "student_correct", "probe", "silent", "baseline_accuracy", "taught_accuracy")
HIDDEN += ("leaked", "teaching_tokens", "rim_judges")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def copy_store(store: str, into: Path) -> str:
    """A copy of the sqlite store under `into`, as a tracking URI."""
    path = Path(store.removeprefix("sqlite:///")) if store.startswith("sqlite:///") else Path(store)
    if not path.is_file():
        fail(f"{store}: no MLflow sqlite database there (pass --store PATH/mlruns.db or sqlite:///PATH)")
    copy = into / "mlruns.db"
    shutil.copy2(path, copy)
    return f"sqlite:///{copy}"


def pick_runs(uri: str, experiment: str) -> dict:
    """The newest evaluate run with teaching traces, and the SFT and GRPO runs of its pipeline (or the newest)."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        fail(f"the store has no experiment '{experiment}' (--experiment NAME)")

    def stage_runs(stage: str, parent: str | None = None):
        query = f"tags.`atlas.stage` = '{stage}' and attributes.status = 'FINISHED'"
        if parent:
            query += f" and tags.`mlflow.parentRunId` = '{parent}'"
        return client.search_runs([exp.experiment_id], query, order_by=["attributes.start_time DESC"])

    def has_traces(run) -> bool:
        return any(a.path == TRACES for a in client.list_artifacts(run.info.run_id, "eval"))

    evaluate = next((r for r in stage_runs("evaluate") if has_traces(r)), None)
    if evaluate is None:
        fail(f"no finished evaluate run in '{experiment}' has {TRACES} (run `atlas evaluate` with this project's code)")
    picked = {"experiment_id": exp.experiment_id, "evaluate": evaluate}
    parent = evaluate.data.tags.get("mlflow.parentRunId")
    grpo = stage_runs("grpo", parent) or stage_runs("grpo")
    explained = grpo and any(a.path == EXPLANATIONS for a in client.list_artifacts(grpo[0].info.run_id, "grpo"))
    picked["explained_grpo"] = grpo[0] if explained else None
    for teacher in ("sft", "grpo"):
        query = f"tags.`atlas.teacher` = '{teacher}' and tags.`mlflow.parentRunId` = '{evaluate.info.run_id}'"
        runs = client.search_runs([exp.experiment_id], query)
        if not runs:
            fail(f"evaluate run {evaluate.info.run_id} has no `teacher {teacher}` child run (made since issue 14)")
        picked[teacher] = runs[0]
    return picked


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(uri: str, workdir: Path):
    """`mlflow server` on 127.0.0.1 against `uri`; stopped by its PID (and its process group) on exit."""
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    mlflow = Path(sys.executable).parent / "mlflow"
    log = (workdir / "mlflow-server.log").open("w")
    command = [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", uri, "--default-artifact-root", str(workdir / "artifacts")]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(240):
            if server.poll() is not None:
                fail(f"mlflow server exited ({server.returncode}); see {workdir / 'mlflow-server.log'}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            time.sleep(0.5)
        else:
            fail(f"mlflow server not healthy after 120 s; see {workdir / 'mlflow-server.log'}")
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def trace_row(uri: str, run_id: str) -> tuple[int, dict]:
    """The table index and values of one interaction worth reading: the GRPO teacher's first guided row (else the
    first guided row of any teacher, else the first row)."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        table = json.loads(Path(MlflowClient(uri).download_artifacts(run_id, TRACES, tmp)).read_text())
    rows = [dict(zip(table["columns"], values, strict=True)) for values in table["data"]]
    for wanted in (lambda r: r["teacher"] == "grpo" and r["guidance"], lambda r: r["guidance"], lambda r: True):
        found = [i for i, r in enumerate(rows) if wanted(r)]
        if found:
            return found[0], rows[found[0]]
    fail(f"{TRACES} of run {run_id} is empty")


def quiet_ui(page) -> None:
    """Close what covers the page: the assistant panel, tips, the sidebar."""
    for label in ("Close",):
        with contextlib.suppress(Exception):
            page.get_by_label(label).first.click(timeout=3_000)
    with contextlib.suppress(Exception):
        page.get_by_text("Got it", exact=True).first.click(timeout=1_000)
    with contextlib.suppress(Exception):
        page.get_by_label("Toggle sidebar").first.click(timeout=3_000)
    page.wait_for_timeout(500)


def hide_columns(page, names) -> None:
    """Untick columns in the table's settings menu (MLflow's column chooser)."""
    with contextlib.suppress(Exception):
        page.get_by_label("Table settings").first.click(timeout=5_000)
        for name in names:
            page.get_by_role("menuitemcheckbox", name=name, exact=True).first.click(timeout=3_000)
    page.keyboard.press("Escape")
    page.wait_for_timeout(500)


def preview_cell(page, row_id: str, text: str) -> None:
    """Click the cell showing `text` in the table row of problem `row_id` (unique on a page of 25): MLflow's Preview
    panel then shows the cell's whole text."""
    row = page.get_by_role("row").filter(has_text=row_id).first
    row.get_by_text(text[:60], exact=False).first.click(timeout=20_000)
    page.wait_for_timeout(1_000)


def screenshots(url: str, runs: dict, row: tuple[int, dict], out: Path, chromium: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    exp, evaluate = runs["experiment_id"], runs["evaluate"].info.run_id
    index, values = row
    written = []

    def shot(name: str) -> None:
        written.append(out / name)
        page.screenshot(path=written[-1])

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            profile,
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1800, "height": 1100},
        )
        page = browser.new_page()

        # (a) the teaching traces table at the page of one interaction, its guidance and RIM rationale previewed
        page.goto(f"{url}/#/experiments/{exp}/runs/{evaluate}/artifacts/{TRACES}?{MODEL_TRAINING}")
        page.get_by_text("problem", exact=True).first.wait_for(timeout=60_000)
        quiet_ui(page)
        hide_columns(page, HIDDEN)
        for _ in range(index // 25):  # the table shows 25 rows a page
            page.locator("[title='Next Page']").first.click(timeout=10_000)
            page.wait_for_timeout(300)
        preview_cell(page, values["id"], values["guidance"] or values["problem"])
        shot("teaching_trace.png")
        if values["rim_rationale"]:
            preview_cell(page, values["id"], values["rim_rationale"])
            shot("teaching_trace_rim.png")

        # (b) MLflow's Compare of the SFT and GRPO teachers (the evaluate run's child runs), differences only
        ids = json.dumps([runs["sft"].info.run_id, runs["grpo"].info.run_id])
        page.goto(f"{url}/#/compare-runs?runs={ids}&experiments={json.dumps([exp])}&{MODEL_TRAINING}")
        page.get_by_text("Run ID", exact=False).first.wait_for(timeout=60_000)
        quiet_ui(page)
        metrics = page.get_by_text("Metrics", exact=True).last
        metrics.scroll_into_view_if_needed(timeout=20_000)
        with contextlib.suppress(Exception):  # the switch under the Metrics heading (Parameters, Metrics, Tags)
            page.get_by_text("Show diff only", exact=True).nth(1).click(timeout=5_000)
        metrics.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(1_500)
        shot("compare_sft_grpo.png")

        # (c) the evaluation's metrics of each teacher side by side (the evaluate run's model metrics)
        page.goto(f"{url}/#/experiments/{exp}/runs/{evaluate}/model-metrics?{MODEL_TRAINING}")
        page.wait_for_timeout(3_000)
        quiet_ui(page)
        with contextlib.suppress(Exception):
            page.get_by_placeholder("Search", exact=False).first.fill("taught_accuracy", timeout=10_000)
        page.wait_for_timeout(2_000)
        shot("compare_teachers.png")

        # (d) GRPO's RIM explanations per logging step, when its run has them (RIM in the reward)
        grpo = runs["explained_grpo"]
        if grpo is not None:
            page.goto(f"{url}/#/experiments/{exp}/runs/{grpo.info.run_id}/artifacts/{EXPLANATIONS}?{MODEL_TRAINING}")
            page.get_by_text("rim_rationale", exact=True).first.wait_for(timeout=60_000)
            quiet_ui(page)
            page.wait_for_timeout(1_000)
            shot("grpo_rim_explanations.png")

        # (e) the experiment in the model-training view (MLflow 3.17's UI starts in its GenAI view whatever the
        # experiment's `mlflow.experimentKind`; every page here, and the link `make ui` prints, carries the query
        # parameter of the model-training view)
        page.goto(f"{url}/#/experiments/{exp}/runs?{MODEL_TRAINING}")
        page.wait_for_timeout(4_000)
        quiet_ui(page)
        with contextlib.suppress(Exception):  # unfold the pipeline run: its stage runs nested under it
            page.get_by_role("row").filter(has_text="pipeline [").first.locator("button").first.click(timeout=5_000)
            page.wait_for_timeout(1_500)
        shot("experiment_runs.png")
        browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="the MLflow sqlite store (mlruns.db or sqlite:///...)")
    parser.add_argument("--out", default="docs/img", help="where the PNGs go (default docs/img)")
    parser.add_argument("--experiment", default="atlas")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)
    if not Path(args.chromium).exists():
        fail(f"{args.chromium} not found: `apt-get install -y chromium` (what `make screenshots` does)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="atlas-screenshots-") as tmp:
        uri = copy_store(args.store, Path(tmp))
        runs = pick_runs(uri, args.experiment)
        row = trace_row(uri, runs["evaluate"].info.run_id)
        with mlflow_server(uri, Path(tmp)) as url:
            written = screenshots(url, runs, row, out, args.chromium)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
