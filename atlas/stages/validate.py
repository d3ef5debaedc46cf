"""Stage `validate`: Great Expectations suite, quarantine, train/dev/eval split, dataset card.

The suite runs over the ingested records; bad ones are quarantined with reasons; the rest are split by hash (the
held-out `eval` split, then a `dev` split carved from train for design and tuning decisions) and capped
(`data.max_train`, `max_dev`, `max_eval`, `max_sft`), and written with their dataset card as one folder
(`data/processed/{train,dev,eval,sft}.jsonl` and `dataset_card.json`; `sft` holds train-split demonstrations only;
swapped in as one unit: a kill at any moment leaves the old set or the new one, each matching its card), then
`reports/validation.json` and `reports/quarantine.jsonl`. Too many bad records stop it with one line per problem and
leave the previous processed data untouched."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from atlas.config import AtlasConfig
from atlas.core import paths
from atlas.core.errors import InputError
from atlas.core.io import atomic_write_text, replace_dir, write_json
from atlas.data import sources
from atlas.data.card import build_card
from atlas.data.schema import RECORD_KEYS, record_line

log = logging.getLogger(__name__)


def _read_records(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    rows = sources.read_jsonl_rows(path)
    bad = [
        f"{path}: line {n}: expected a JSON object, got {type(raw).__name__}"
        for n, raw in rows
        if not isinstance(raw, dict)
    ]
    if bad:
        raise InputError(sources.format_problems(bad))
    return [raw for _, raw in rows], [n for n, _ in rows]


def _write_processed(outputs: dict[Path, list[dict[str, Any]]], card_settings: dict[str, Any]) -> None:
    """The processed files and their card, written into a fresh folder that then replaces data/processed at once."""
    texts = {path: "".join(record_line(r) for r in rows) for path, rows in outputs.items()}
    names = {paths.TRAIN: "train", paths.DEV: "dev", paths.EVAL: "eval", paths.SFT_DATA: "sft"}
    card = build_card({names[p]: (str(p), outputs[p], texts[p]) for p in outputs}, card_settings)
    with replace_dir(paths.PROCESSED_DIR) as staging:
        for path, text in texts.items():
            (staging / path.relative_to(paths.PROCESSED_DIR)).write_text(text, encoding="utf-8")
        (staging / paths.DATASET_CARD.relative_to(paths.PROCESSED_DIR)).write_text(
            json.dumps(card, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
        )


def run(cfg: AtlasConfig) -> dict:
    """GX suite over paths.RECORDS, quarantine, split and caps; writes the processed data and the reports."""
    from atlas.data.split import assign_splits, take_by_hash
    from atlas.data.validation import build_report, run_suite

    data = cfg.data
    if not Path(paths.RECORDS).exists():
        raise InputError(f"{paths.RECORDS}: file not found (run `atlas ingest` first)")
    records, lines = _read_records(Path(paths.RECORDS))
    outcome = run_suite(records, data.max_field_chars)
    quarantine, problems = [], []
    for index, found in outcome.bad.items():
        reason = "; ".join(f"{field}: {why}" for _, field, why in found)
        quarantine.append({**records[index], "line": lines[index], "reason": reason})
        where = f"{paths.RECORDS}: line {lines[index]}"
        problems += [f"{where}: field '{field}': {why} (id {records[index].get('id')!r})" for _, field, why in found]
    good = [{k: r[k] for k in RECORD_KEYS} for i, r in enumerate(records) if i not in outcome.bad]

    split = assign_splits(good, data.split_salt, data.eval_fraction, data.dev_fraction)
    train_pool = [r for r in split.train if r["ground_truth"] is not None]
    dev_pool = [r for r in split.dev if r["ground_truth"] is not None]
    eval_pool = [r for r in split.eval if r["ground_truth"] is not None]
    train = take_by_hash(train_pool, data.max_train, data.split_salt)
    dev = take_by_hash(dev_pool, data.max_dev, data.split_salt)
    evals = take_by_hash(eval_pool, data.max_eval, data.split_salt)
    sft_pool = [r for r in split.train if r["approach"] and r["teaching"]]
    sft = take_by_hash(sft_pool, data.max_sft, data.split_salt)
    counts = {
        "train": len(train),
        "dev": len(dev),
        "eval": len(evals),
        "sft": len(sft),
        "train_before_cap": len(train_pool),
        "dev_before_cap": len(dev_pool),
        "eval_before_cap": len(eval_pool),
        "sft_before_cap": len(sft_pool),
        "eval_dropped_as_duplicates_of_train": len(split.contaminated),
    }
    report = build_report(outcome, len(records), data.max_bad_fraction, counts)
    atomic_write_text(paths.QUARANTINE, "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in quarantine))
    if not report["passed"]:
        write_json(paths.VALIDATION_REPORT, report)
        head = (
            f"validation failed: {report['bad']} of {report['rows']} records ({report['bad_fraction']:.1%}) are bad, "
            f"more than data.max_bad_fraction={data.max_bad_fraction} (details in {paths.QUARANTINE}):"
        )
        raise InputError(head + "\n" + sources.format_problems(problems))
    for name in ("train", "eval"):
        if not counts[name]:
            log.warning("the %s split is empty after validation", name)
    keys = ("split_salt", "eval_fraction", "dev_fraction", "max_train", "max_dev", "max_eval", "max_sft")
    settings = {k: getattr(data, k) for k in keys}
    _write_processed({paths.TRAIN: train, paths.DEV: dev, paths.EVAL: evals, paths.SFT_DATA: sft}, settings)
    write_json(paths.VALIDATION_REPORT, report)
    log.info("validated %d records: %d quarantined; %s", len(records), len(quarantine), counts)
    return report
