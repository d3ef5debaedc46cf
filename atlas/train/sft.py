"""SFT stage: the teacher learns to answer the teacher prompt (question + student's approach) with
`<thinking>diagnosis</thinking><teaching>guidance</teaching>`, in exactly the prompt format GRPO then samples from.
Loss on the completion only (TRL's prompt-completion format); optional LoRA, merged before saving.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from atlas import paths
from atlas.config import AtlasConfig
from atlas.errors import AtlasError
from atlas.io import read_jsonl, write_json
from atlas.probe import load_probes
from atlas.protocol import render_teacher_prompt, teacher_target

log = logging.getLogger(__name__)


NO_GUIDANCE_THINKING = "The student already handles this problem; extra guidance could only distract."
# With `protocol.probe: attempt` the teacher sees the student's attempt, so the thinking is the verdict on it (the
# dataset's diagnosis describes the dataset's own student approach, not this attempt).
VERDICTS = {
    "right": "The attempt is right.",
    "wrong": "The attempt is wrong.",
    "likely_right": "Attempts like this one are usually right.",
    "likely_wrong": "Attempts like this one are usually wrong.",
    "unfinished": "The attempt does not finish.",
}


def visible_group(probe: dict) -> tuple[str, bool]:
    """What the teacher can see of how an attempt will fare: the kind of problem and whether the attempt finished."""
    return probe.get("kind") or "unknown", bool(probe["baseline"][0]["completed"])


def wrong_rates(probes: dict[str, dict]) -> dict[tuple[str, bool], float]:
    """Per visible group, how often the student alone is wrong on the train split."""
    groups: dict[tuple[str, bool], list[float]] = {}
    for probe in probes.values():
        groups.setdefault(visible_group(probe), []).append(1.0 - probe["baseline_accuracy"])
    return {group: sum(v) / len(v) for group, v in groups.items()}


def adaptive_target(probe: dict, cfg, rates: dict) -> tuple[str, bool]:
    """(thinking, teach?) for one train problem under `sft.abstain_rule`:

    - `solved`: stay silent exactly where the student's attempt is right. The teacher has to tell that from the
      attempt, which a small teacher cannot do reliably (it would have to check the arithmetic).
    - `visible`: teach where attempts that look like this one (same kind, finished or not) are wrong at least
      `sft.wrong_threshold` of the time on the train split; stay silent elsewhere. A rule the teacher can learn from
      what it sees, and that keeps it away from the attempts it would break (docs/cpu-preset.md).
    """
    s = cfg.sft
    attempt = cfg.protocol.probe == "attempt"
    if s.abstain_rule == "visible":
        if rates.get(visible_group(probe), 1.0) >= s.wrong_threshold:
            finished = visible_group(probe)[1]
            return VERDICTS["likely_wrong" if finished or not attempt else "unfinished"], True
        return VERDICTS["likely_right"], False
    if probe["baseline_accuracy"] >= s.solved_threshold:
        return (VERDICTS["right"] if attempt else NO_GUIDANCE_THINKING), False
    return VERDICTS["wrong"], True


def build_sft_rows(rows: list[dict], tokenizer, probes: dict[str, dict] | None = None, cfg=None) -> list[dict]:
    """Prompt-completion rows in the exact GRPO prompt format.

    With `probes` (the probe stage's cache of the frozen student on the train split):
    - `sft.use_student_probe`: the prompt shows the real student's probe instead of the dataset's approach, so SFT
      and GRPO see the same distribution of prompts;
    - `sft.adaptive_targets`: where the student should be left alone (`adaptive_target`) the target is an empty
      `<teaching>`: "do no harm", no intervention for a capable student.
    """
    probes = probes or {}
    rates = wrong_rates(probes) if cfg is not None and cfg.sft.abstain_rule == "visible" else {}
    out = []
    for row in rows:
        if not row.get("teaching"):
            continue
        probe = probes.get(row["id"])
        if probe is None and cfg is not None and cfg.sft.adaptive_targets:
            continue  # adaptive targets need the student's measured outcomes
        approach = row.get("approach") or ""
        diagnosis, teaching = row.get("diagnosis"), row["teaching"]
        probe_kind = cfg.protocol.probe if cfg is not None else "approach"
        if probe is not None and cfg is not None:
            if cfg.sft.use_student_probe:
                approach = probe["probe"]
            if cfg.sft.adaptive_targets:
                verdict, teach = adaptive_target(probe, cfg, rates)
                if probe_kind == "attempt" or not teach:
                    diagnosis = verdict
                teaching = teaching if teach else ""
        out.append(
            {
                "id": row["id"],
                "prompt": render_teacher_prompt(tokenizer, row["problem"], approach, probe_kind),
                "completion": teacher_target(diagnosis, teaching),
            }
        )
    return out


def run_sft(cfg: AtlasConfig, teacher_dir: Path = paths.MODELS_DIR / "teacher", out_dir: Path = paths.SFT_CHECKPOINT):
    """Train and save the SFT teacher; returns the metrics dict (also written to reports/sft.json)."""
    from atlas.models import load_causal_lm, load_tokenizer
    from atlas.train.common import save_model, setup_torch, snapshot, weight_change

    setup_torch(cfg, cfg.sft.seed)
    tokenizer = load_tokenizer(teacher_dir, cfg.models.teacher.trust_remote_code)
    model = load_causal_lm(teacher_dir, cfg.models.teacher, device=_device(cfg))
    if not cfg.sft.enabled:
        log.info("sft.enabled is false: the SFT checkpoint is the base teacher")
        save_model(model, tokenizer, out_dir)
        metrics = {"enabled": False, "steps": 0, "weight_change": 0.0}
        write_json(paths.SFT_METRICS, metrics)
        return metrics

    probes = load_probes("train") if paths.PROBES.exists() else {}
    rows = build_sft_rows(read_jsonl(paths.SFT_DATA), tokenizer, probes, cfg)
    if not rows:
        raise AtlasError(f"{paths.SFT_DATA} has no rows with teaching text: SFT needs demonstrations")
    before = snapshot(model)
    trainer = _trainer(cfg, model, tokenizer, rows)
    result = trainer.train()
    if not trainer.accelerator.is_main_process:
        return {}  # under `accelerate launch` rank 0 saves and reports
    model = trainer.model
    if cfg.sft.lora.enabled:
        model = model.merge_and_unload()
    change = weight_change(before, model)
    if change == 0.0:
        raise AtlasError("SFT finished but the weights did not change: check sft.learning_rate and the data")
    save_model(model, tokenizer, out_dir)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    metrics = {
        "enabled": True,
        "steps": trainer.state.global_step,
        "examples": len(rows),
        "no_guidance_targets": sum(r["completion"].endswith("<teaching></teaching>") for r in rows),
        "train_loss": float(result.training_loss),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "weight_change": change,
    }
    write_json(paths.SFT_METRICS, metrics)
    shutil.rmtree(paths.STATE_DIR / "sft_work", ignore_errors=True)
    return metrics


def _device(cfg: AtlasConfig) -> str:
    from atlas.models import resolve_device

    return resolve_device(cfg.models.device)


def _trainer(cfg: AtlasConfig, model, tokenizer, rows: list[dict]):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from atlas.train.callbacks import MlflowMetricsCallback
    from atlas.train.common import score_only_completions_on_cpu

    score_only_completions_on_cpu(_device(cfg))
    s = cfg.sft
    args = SFTConfig(
        output_dir=str(paths.STATE_DIR / "sft_work"),
        max_steps=s.max_steps,
        learning_rate=s.learning_rate,
        per_device_train_batch_size=s.per_device_train_batch_size,
        gradient_accumulation_steps=s.gradient_accumulation_steps,
        max_length=s.max_length,
        bf16=s.bf16,
        gradient_checkpointing=s.gradient_checkpointing,
        use_cpu=_device(cfg) == "cpu",
        lr_scheduler_type="cosine",
        warmup_steps=0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=s.seed,
        data_seed=s.seed,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
    peft_config = None
    if s.lora.enabled:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=s.lora.r,
            lora_alpha=s.lora.alpha,
            lora_dropout=s.lora.dropout,
            target_modules=s.lora.target_modules,
            task_type="CAUSAL_LM",
        )
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[MlflowMetricsCallback(prefix="sft")],
    )
