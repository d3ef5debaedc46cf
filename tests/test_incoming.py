"""Retraining on new data: the incoming folder's hash, and the deployments that react to it."""

from __future__ import annotations

import json

from atlas.config import load_config
from atlas.data import incoming


def test_check_reports_new_rows_once(project):
    cfg = load_config()
    state = project / ".atlas" / "incoming.json"
    first, empty_hash = incoming.check(cfg, state)
    assert first  # never looked before
    assert incoming.check(cfg, state) == (False, empty_hash)
    row = {"problem": "Ann has 2 pens and buys 3 more. How many pens does she have?", "ground_truth": "5"}
    (project / "data/incoming/batch1.jsonl").write_text(json.dumps(row) + "\n")
    changed, new_hash = incoming.check(cfg, state)
    assert changed and new_hash != empty_hash
    assert incoming.check(cfg, state) == (False, new_hash)


def test_new_data_counts_as_trained_only_after_a_successful_run(project):
    """Issue 13 item 6: the watcher used to remember new content before the retraining it triggered had run."""
    cfg = load_config()
    state = project / ".atlas" / "incoming.json"
    incoming.mark_trained(incoming.content_hash(project / "data/incoming"), state)
    row = {"problem": "Ann has 2 pens and buys 3 more. How many pens does she have?", "ground_truth": "5"}
    (project / "data/incoming/batch1.jsonl").write_text(json.dumps(row) + "\n")
    changed, sha = incoming.check(cfg, state)
    assert changed and incoming.check(cfg, state) == (False, sha)  # announced once, while its run goes on
    incoming.mark_failed(state)  # the run failed
    assert incoming.check(cfg, state) == (True, sha)  # announced again: retried
    incoming.mark_trained(sha, state)  # a run succeeded on it
    assert incoming.check(cfg, state) == (False, sha)


def test_train_deployment_has_schedule_trigger_and_limit(project):
    from flows.train import build_deployments

    cfg = load_config(overrides=["orchestration.cron=0 5 * * 2", "orchestration.watch_interval_seconds=60"])
    train, watcher = build_deployments(cfg)
    assert train.name == "train" and watcher.name == "watch"
    assert train.schedules[0].schedule.cron == "0 5 * * 2"
    assert [t.expect for t in train.triggers] == [{incoming.EVENT}]
    assert train.concurrency_limit == 1
    assert watcher.schedules[0].schedule.interval.total_seconds() == 60
