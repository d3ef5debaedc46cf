"""Each stage at the tiny preset, run once per session in-process, doing its real job (real generations, real
training through TRL, real metrics), then the registry operations on top of its outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atlas.config import load_config
from atlas.core import paths
from atlas.core.errors import AtlasError, GateFailed
from atlas.core.io import read_json
from atlas.ops import gate as gating
from atlas.ops import registry
from atlas.stages import STAGES


def _weights(path: Path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_models_are_materialized(in_tiny):
    root, _ = in_tiny
    for role in ("teacher", "student"):
        assert (root / paths.MODELS_DIR / role / "config.json").exists()
    teacher, student = _weights(root / "data/models/teacher"), _weights(root / "data/models/student")
    key = next(iter(teacher))
    assert not (teacher[key] == student[key]).all(), "teacher and student are built from different seeds"


def test_probe_caches_probe_baselines_and_likelihood(in_tiny):
    root, results = in_tiny
    rows = [json.loads(line) for line in (root / paths.PROBES).read_text().splitlines()]
    cfg = load_config()
    assert {r["split"] for r in rows} == {"train", "eval"}
    for row in rows:
        assert len(row["baseline"]) == cfg.protocol.baseline_k
        assert 0.0 <= row["baseline_accuracy"] <= 1.0
        assert row["baseline_logp"] < 0
    assert results["probe"]["eval"]["problems"] == len([r for r in rows if r["split"] == "eval"])


def test_sft_trains_and_changes_weights(in_tiny):
    root, results = in_tiny
    sft = results["sft"]
    assert sft["steps"] == load_config().sft.max_steps
    assert sft["weight_change"] > 0
    base, tuned = _weights(root / "data/models/teacher"), _weights(root / paths.SFT_CHECKPOINT)
    assert any(not (base[k] == tuned[k]).all() for k in base)


def test_rule_baseline_is_sft_with_the_visible_rule(in_tiny):
    """Stage `rule` trains its own checkpoint from the hand rule's targets, whatever `sft.targets` says."""
    from atlas.llm.models import load_tokenizer
    from atlas.stages.probe import load_probes
    from atlas.stages.sft import build_sft_rows

    root, results = in_tiny
    cfg = load_config()
    rule = results["rule"]
    assert rule["steps"] == cfg.sft.max_steps and rule["weight_change"] > 0
    assert read_json(root / paths.RULE_METRICS) == rule
    visible = cfg.model_copy(update={"sft": cfg.sft.model_copy(update={"targets": "visible"})})
    rows = build_sft_rows(
        [json.loads(line) for line in (root / paths.SFT_DATA).read_text().splitlines()],
        load_tokenizer(root / "data/models/teacher"),
        load_probes("train"),
        visible,
    )
    assert rule["no_guidance_targets"] == sum(r["completion"].endswith("<teaching></teaching>") for r in rows)
    sft_w, rule_w = _weights(root / paths.SFT_CHECKPOINT), _weights(root / paths.RULE_CHECKPOINT)
    assert any(not (sft_w[k] == rule_w[k]).all() for k in sft_w)


def test_evaluate_on_the_dev_split_leaves_the_held_out_reports_alone(in_tiny, tmp_path, monkeypatch):
    import dataclasses
    import shutil

    from atlas.stages import evaluate
    from atlas.teaching.records import read_probes, write_probes

    root, _ = in_tiny
    copy = tmp_path / "project"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("mlruns.db", "mlartifacts", "work"))
    monkeypatch.chdir(copy)
    cfg = load_config()
    with pytest.raises(AtlasError, match="no dev problems"):
        evaluate.run(cfg, split="dev")
    probes = list(read_probes(paths.PROBES).values())
    to_dev = {p.id for p in probes if p.split == "eval"}
    to_dev = set(sorted(to_dev)[:2])
    write_probes(paths.PROBES, [dataclasses.replace(p, split="dev") if p.id in to_dev else p for p in probes])
    held_out = paths.EVAL_METRICS.read_bytes()
    result = evaluate.run(cfg, split="dev")
    assert result["split"] == "dev"
    assert paths.EVAL_METRICS.read_bytes() == held_out
    dev = read_json(paths.DEV_REPORTS_DIR / "eval.json")
    assert dev["teachers"]["grpo"]["overall"]["n_problems"] == 2
    assert dev["paired"]["grpo-sft"]["n_problems"] == 2


def test_grpo_trains_with_real_rewards(in_tiny):
    root, results = in_tiny
    grpo, cfg = results["grpo"], load_config()
    assert grpo["steps"] == cfg.grpo.max_steps
    assert grpo["weight_change"] > 0
    assert grpo["reward_functions"] == ["teaching", "likelihood", "rim"]
    # exactly one taught answer per completion: steps x completions per step (distinct completions)
    assert grpo["student_generations"] <= cfg.grpo.max_steps * cfg.grpo.per_device_train_batch_size
    assert grpo["student_generations"] >= cfg.grpo.max_steps
    sft, tuned = _weights(root / paths.SFT_CHECKPOINT), _weights(root / paths.GRPO_CHECKPOINT)
    assert any(not (sft[k] == tuned[k]).all() for k in sft)


def test_evaluate_reports_every_metric_for_each_teacher(in_tiny):
    root, _ = in_tiny
    result = read_json(root / paths.EVAL_METRICS)
    assert set(result["teachers"]) == {"none", "sft", "grpo"}
    needed = {
        "baseline_accuracy",
        "taught_accuracy",
        "accuracy_delta",
        "accuracy_delta_ci_low",
        "accuracy_delta_ci_high",
        "non_degradation_rate",
        "non_degradation_rate_problem",
        "improvement_rate",
        "degradation_rate",
        "completion_rate_baseline",
        "completion_rate_taught",
        "response_tokens_baseline",
        "response_tokens_taught",
        "token_reduction",
        "teaching_tokens",
        "leak_rate",
        "n_problems",
        "k",
    }
    for teacher in result["teachers"].values():
        assert needed <= set(teacher["overall"])
        assert teacher["per_kind"]
    assert result["teachers"]["none"]["overall"]["teaching_tokens"] == 0
    assert (root / paths.EVAL_SUMMARY).read_text().count("|") > 10
    assert (root / "reports/accuracy_by_kind.png").stat().st_size > 1000


def test_gate_with_impossible_threshold_fails_naming_the_metric(in_tiny):
    cfg = load_config(overrides=["gate.min_accuracy_delta=2.0"])
    with pytest.raises(GateFailed, match=r"FAIL accuracy_delta .* >= 2\.000"):
        gating.gate(cfg)
    assert read_json(paths.GATE_REPORT)["passed"] is False


def _versions(name: str) -> list:
    from mlflow import MlflowClient

    return MlflowClient().search_model_versions(f"name = '{name}'")


def test_registry_rules(in_tiny):
    """Issue 13 items 1 and 7: a tiny teacher is never registered unless asked; a checkpoint already registered is
    not stored again; `previous` always names other weights; a champion of another lineage is never replaced."""
    name = load_config().tracking.registered_model
    tiny = load_config()
    gating.gate(tiny)
    skipped = registry.register(tiny)
    assert skipped["outcome"] == "not registered" and "gate.promote is false" in skipped["reason"]
    assert registry.alias_version(name, "champion") is None and not _versions(name)

    grpo, sft = (
        load_config(overrides=["gate.promote=true"]),
        load_config(overrides=["gate.promote=true", "gate.teacher=sft"]),
    )
    gating.gate(grpo)
    first = registry.register(grpo)
    assert (first["outcome"], first["champion"], first["previous"]) == ("registered", True, None)
    gating.gate(grpo)
    again = registry.register(grpo)  # nothing changed: the same version, no copy, no `previous` onto itself
    assert (again["outcome"], again["version"], again["previous"]) == ("reused", first["version"], None)
    assert len(_versions(name)) == 1 and registry.alias_version(name, "previous") is None

    gating.gate(sft)
    second = registry.register(sft)  # other weights: a new champion, the first becomes `previous`
    assert (second["outcome"], second["champion"], second["previous"]) == ("registered", True, first["version"])
    gating.gate(grpo)
    back = registry.register(grpo)  # the first weights again: reused, and `previous` is the other weights
    assert (back["outcome"], back["version"], back["previous"]) == ("reused", first["version"], second["version"])
    assert len(_versions(name)) == 2
    champion, previous = registry.alias_version(name, "champion"), registry.alias_version(name, "previous")
    assert champion.checkpoint_sha256 != previous.checkpoint_sha256
    registry.rollback_champion(grpo)  # rollback always changes the model
    assert registry.alias_version(name, "champion").version == second["version"]
    with pytest.raises(AtlasError, match="no 'previous'"):
        registry.rollback_champion(grpo)

    # another lineage (another held-out split): not compared with the champion, never replaces it
    other = load_config(overrides=["gate.promote=true", "data.split_salt=another-split"])
    report = gating.gate(other)
    assert report["champion_version"] is None and "another lineage" in report["champion_note"]
    foreign = registry.register(other)
    assert foreign["champion"] is False and "another lineage" in foreign["reason"]
    assert registry.alias_version(name, "champion").version == second["version"]

    # a failed gate registers nothing
    with pytest.raises(GateFailed):
        gating.gate(load_config(overrides=["gate.promote=true", "gate.min_accuracy_delta=2.0"]))
    with pytest.raises(AtlasError, match="the gate did not pass"):
        registry.register(grpo)


def test_versions_carry_provenance_and_the_config_as_an_artifact(in_tiny):
    """Issue 13 items 5 and 8: the configuration is a JSON artifact (not a truncated tag); the version records
    the git commit, a dirty flag and the exact dvc.lock."""
    from mlflow import MlflowClient

    cfg = load_config(overrides=["gate.promote=true", "gate.teacher=sft", "tracking.registered_model=provenance"])
    gating.gate(cfg)
    out = registry.register(cfg)
    version = MlflowClient().get_model_version("provenance", out["version"])
    tags = version.tags
    assert "config" not in tags and len(tags["config_sha256"]) == 64
    assert tags["git_dirty"] in ("true", "false", "none") and tags["git_commit"]
    assert tags["lineage"] == registry.lineage_id(cfg) and tags["lineage.preset"] == "tiny"
    client = MlflowClient()
    config = json.loads(
        Path(client.download_artifacts(version.run_id, "config.json", str(in_tiny[0] / "dl"))).read_text()
    )
    assert config == cfg.model_dump(mode="json")
    lock = Path(client.download_artifacts(version.run_id, "provenance/dvc.lock", str(in_tiny[0] / "dl")))
    assert lock.read_text() == (Path("dvc.lock").read_text() if Path("dvc.lock").exists() else "")


def test_the_gate_refuses_a_report_of_other_weights(in_tiny):
    """Issue 13 item 3: the evaluation must belong to the checkpoint that is gated and registered."""
    weights = paths.GRPO_CHECKPOINT / "model.safetensors"
    original = weights.read_bytes()
    cfg = load_config(overrides=["gate.promote=true"])
    try:
        gating.gate(cfg)
        weights.write_bytes(original + b"\0")  # other weights after the gate
        with pytest.raises(AtlasError, match="gated .* but it now holds"):
            registry.register(cfg)
        with pytest.raises(AtlasError, match="report is stale"):
            gating.gate(cfg)
    finally:
        weights.write_bytes(original)


@pytest.mark.parametrize("files", [None, {}, {"config.json": b"{}"}, {"config.json": b"{}", "model.safetensors": b""}])
def test_register_refuses_a_missing_or_empty_checkpoint(tmp_path, files):
    ckpt = tmp_path / "ckpt"
    if files is not None:
        ckpt.mkdir()
        for name, data in files.items():
            (ckpt / name).write_bytes(data)
    with pytest.raises(AtlasError, match="missing|no model weights"):
        registry.check_checkpoint(ckpt)


def test_stage_runs_are_tracked(in_tiny):
    from mlflow import MlflowClient

    from atlas.ops.tracking import experiment_id

    client = MlflowClient()
    runs = client.search_runs([experiment_id("atlas")])
    tagged = {r.data.tags.get("atlas.stage") for r in runs}
    assert set(STAGES) - {"config"} <= tagged  # the config stage only writes files
    grpo_run = next(r for r in runs if r.data.tags.get("atlas.stage") == "grpo")
    assert client.get_metric_history(grpo_run.info.run_id, "grpo/teach/accuracy_delta")
    assert grpo_run.data.params["grpo.max_steps"] == "3"


def test_each_teacher_is_a_child_run_of_the_evaluation_for_compare(in_tiny):
    """Issue 14 item 4: the SFT and GRPO stage runs log different metrics (Compare showed NaN against NaN); one child
    run per teacher under the evaluate run carries the same metric names, so Compare puts teachers side by side."""
    from mlflow import MlflowClient

    from atlas.ops.tracking import TEACHER_TAG, experiment_id

    root, _ = in_tiny
    client = MlflowClient()
    runs = client.search_runs([experiment_id("atlas")])
    [evaluate] = [r for r in runs if r.data.tags.get("atlas.stage") == "evaluate"]
    children = {r.data.tags[TEACHER_TAG]: r for r in runs if TEACHER_TAG in r.data.tags}
    teachers = json.loads((root / paths.EVAL_METRICS).read_text())["teachers"]
    assert set(children) == set(teachers)
    for name, run in children.items():
        assert run.data.tags["mlflow.parentRunId"] == evaluate.info.run_id and run.info.status == "FINISHED"
        overall = teachers[name]["overall"]
        assert run.data.metrics["taught_accuracy"] == pytest.approx(overall["taught_accuracy"])
        assert run.data.metrics["non_degradation_rate"] == pytest.approx(overall["non_degradation_rate"])
    assert set(children["sft"].data.metrics) == set(children["grpo"].data.metrics)  # nothing NaN in Compare


def test_evaluation_logs_browsable_teaching_traces(in_tiny):
    """Issue 14 item 3: the evaluate run carries each interaction's text as an MLflow table."""
    from mlflow import MlflowClient

    from atlas.ops.traces import COLUMNS
    from atlas.ops.tracking import experiment_id
    from atlas.teaching.records import read_probes

    root, _ = in_tiny
    client = MlflowClient()
    [run] = [r for r in client.search_runs([experiment_id("atlas")]) if r.data.tags.get("atlas.stage") == "evaluate"]
    table = json.loads(Path(client.download_artifacts(run.info.run_id, "eval/teaching_traces.json")).read_text())
    rows = [dict(zip(table["columns"], values, strict=True)) for values in table["data"]]
    assert table["columns"] == list(COLUMNS)
    outcomes = [json.loads(line) for line in (root / paths.EVAL_OUTCOMES).read_text().splitlines() if line]
    assert [(r["teacher"], r["id"]) for r in rows] == [(o["teacher"], o["id"]) for o in outcomes]
    probes = read_probes(root / paths.PROBES)
    for row, outcome in zip(rows, outcomes, strict=True):
        assert row["problem"] == probes[row["id"]].problem and row["probe"] == probes[row["id"]].probe
        assert row["guidance"] == outcome["teaching"] and row["taught_answer"] == outcome["taught_response"]
        assert row["rim_score"] == outcome.get("rim_score")
        assert row["rim_score"] is not None and set(outcome["rim"]["judges"]) >= {"accuracy"}  # tiny: RIM is on
        judges = outcome["rim"]["judges"].items()
        assert row["rim_rationale"] == " | ".join(f"{n}: {j['rationale'] or j['error']}" for n, j in judges)
        assert row["rim_escalated"].startswith("yes: " if outcome["rim"]["escalated"] else "no")
        assert row["rim_judges"].split() == [f"{n}={j['score']:.2f}" for n, j in judges]
    assert all(r["silent"] and r["guidance"] == "" for r in rows if r["teacher"] == "none")


def test_grpo_logs_the_rim_explanations_and_escalation_rate(in_tiny):
    """Issue 14 item 3: the GRPO run has, beside `grpo/rim_rewards/*`, the escalation rate and a table of every
    completion's RIM explanation per logging step."""
    from mlflow import MlflowClient

    from atlas.ops.tracking import experiment_id

    root, _ = in_tiny
    client = MlflowClient()
    [run] = [r for r in client.search_runs([experiment_id("atlas")]) if r.data.tags.get("atlas.stage") == "grpo"]
    assert "grpo/rim_rewards/accuracy" in run.data.metrics and "grpo/escalation_rate" in run.data.metrics
    path = client.download_artifacts(run.info.run_id, "grpo/rim_explanations.json", str(root / ".atlas"))
    table = json.loads(Path(path).read_text())
    rows = [dict(zip(table["columns"], values, strict=True)) for values in table["data"]]
    steps = {p.step for p in client.get_metric_history(run.info.run_id, "grpo/escalation_rate")}
    assert rows and {r["step"] for r in rows} == steps
    assert all(r["rim_escalated"] == "no" or r["rim_escalated"].startswith("yes: ") for r in rows)
    assert all("accuracy: " in r["rim_rationale"] and "accuracy=" in r["rim_judges"] for r in rows)


def test_planted_api_key_never_reaches_any_output(in_tiny):
    """The session's tiny run had GEMINI_API_KEY/OPENAI_API_KEY set to a planted value: scan everything it wrote
    (MLflow store and artifacts, reports, data, RIM cache) for it."""
    from tests.conftest import PLANTED_KEY

    root, _ = in_tiny
    needle = PLANTED_KEY.encode()
    scanned = 0
    for path in root.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            scanned += 1
            assert needle not in path.read_bytes(), f"{path} contains the planted API key"
    assert scanned > 50
    assert (root / "mlruns.db").exists() and (root / ".atlas" / "rim_cache.sqlite").exists()
