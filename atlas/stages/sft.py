"""Stage `sft`: supervised fine-tuning of the teacher.

The teacher learns to answer the teacher prompt (question + the student's probe) with
`<thinking>diagnosis</thinking><teaching>guidance</teaching>`, in exactly the prompt format GRPO then samples from.
TRL's `SFTTrainer` with its own `SFTConfig` (`atlas.training.configs`), loss on the completion only (TRL's
prompt-completion format); optional LoRA (PEFT's `LoraConfig`), merged before saving. Checkpoints every
`sft.save_steps` in `data/work/sft/`: a killed run resumes from its last complete one, as GRPO does.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from atlas.config import AtlasConfig
from atlas.core import paths
from atlas.core.errors import AtlasError
from atlas.core.io import read_jsonl, write_json
from atlas.stages.probe import load_probes
from atlas.teaching.protocol import render_teacher_prompt, teacher_target
from atlas.teaching.records import ProbeRecord

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
    # `mixed` targets: the teacher states its move, not a verdict it cannot back (GRPO learns which move pays)
    "may_teach": "A hint may help this attempt.",
    "may_abstain": "This attempt may be fine as it is.",
}


def visible_group(probe: ProbeRecord) -> tuple[str, bool]:
    """What the teacher can see of how an attempt will fare: the kind of problem and whether the attempt finished."""
    return probe.kind or "unknown", bool(probe.first_attempt.completed)


def wrong_rates(probes: dict[str, ProbeRecord]) -> dict[tuple[str, bool], float]:
    """Per visible group, how often the student alone is wrong on the train split."""
    groups: dict[tuple[str, bool], list[float]] = {}
    for probe in probes.values():
        groups.setdefault(visible_group(probe), []).append(1.0 - probe.baseline_accuracy)
    return {group: sum(v) / len(v) for group, v in groups.items()}


def mixed_moves(probes: dict[str, ProbeRecord], salt: str = "atlas-sft-mixed") -> dict[str, bool]:
    """`mixed` targets: within every visible group, alternate teach / stay silent over the group's problems in a
    fixed hash order, so both moves occur in every situation the teacher can see (half each, the first one teaches)
    and no move is tied to whether the student was right. GRPO then samples both in each group of completions, and
    the reward, not a rule written here, decides which one pays where."""
    import hashlib

    groups: dict[tuple[str, bool], list[ProbeRecord]] = {}
    for probe in probes.values():
        groups.setdefault(visible_group(probe), []).append(probe)
    moves = {}
    for members in groups.values():
        ordered = sorted(members, key=lambda p: (hashlib.sha256(f"{salt}:{p.id}".encode()).hexdigest(), p.id))
        moves.update({p.id: i % 2 == 0 for i, p in enumerate(ordered)})
    return moves


def adaptive_target(probe: ProbeRecord, cfg: AtlasConfig, rates: dict, moves: dict | None = None) -> tuple[str, bool]:
    """(thinking, teach?) for one train problem under `sft.targets`:

    - `solved`: stay silent exactly where the student's attempt is right. The teacher has to tell that from the
      attempt, which a small teacher cannot do reliably (it would have to check the arithmetic).
    - `visible`: the hand rule: teach where attempts that look like this one (same kind, finished or not) are wrong
      at least `sft.wrong_threshold` of the time on the train split; stay silent elsewhere.
    - `mixed`: both moves in every visible situation (`mixed_moves`); RL decides when to use which.
    """
    s = cfg.sft
    attempt = cfg.protocol.probe == "attempt"
    if s.targets == "mixed":
        teach = (moves or {}).get(probe.id, True)
        return VERDICTS["may_teach" if teach else "may_abstain"], teach
    if s.targets == "visible":
        if rates.get(visible_group(probe), 1.0) >= s.wrong_threshold:
            finished = visible_group(probe)[1]
            return VERDICTS["likely_wrong" if finished or not attempt else "unfinished"], True
        return VERDICTS["likely_right"], False
    if probe.baseline_accuracy >= s.solved_threshold:
        return (VERDICTS["right"] if attempt else NO_GUIDANCE_THINKING), False
    return VERDICTS["wrong"], True


def build_sft_rows(
    rows: list[dict], tokenizer, probes: dict[str, ProbeRecord] | None = None, cfg: AtlasConfig | None = None
) -> list[dict]:
    """Prompt-completion rows in the exact GRPO prompt format.

    With `probes` (the probe stage's cache of the frozen student on the train split):
    - `sft.use_student_probe`: the prompt shows the real student's probe instead of the dataset's approach, so SFT
      and GRPO see the same distribution of prompts;
    - `sft.targets` other than `dataset`: where the student is left alone (`adaptive_target`) the target is an empty
      `<teaching>`: "do no harm", no intervention for a capable student.
    """
    probes = probes or {}
    targets = cfg.sft.targets if cfg is not None else "dataset"
    rates = wrong_rates(probes) if targets == "visible" else {}
    moves = mixed_moves(probes) if targets == "mixed" else {}
    out = []
    for row in rows:
        if not row.get("teaching"):
            continue
        probe = probes.get(row["id"])
        if probe is None and targets != "dataset":
            continue  # adaptive targets need the student's measured outcomes
        approach = row.get("approach") or ""
        diagnosis, teaching = row.get("diagnosis"), row["teaching"]
        probe_kind = cfg.protocol.probe if cfg is not None else "approach"
        if probe is not None and cfg is not None:
            if cfg.sft.use_student_probe:
                approach = probe.probe
            if targets != "dataset":
                verdict, teach = adaptive_target(probe, cfg, rates, moves)
                if probe_kind == "attempt" or not teach or targets == "mixed":
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


def run(
    cfg: AtlasConfig,
    teacher_dir: Path = paths.MODELS_DIR / "teacher",
    out_dir: Path = paths.SFT_CHECKPOINT,
    metrics_path: Path = paths.SFT_METRICS,
    work_dir: Path = paths.SFT_WORK,
):
    """Train and save the SFT teacher; returns the metrics dict (also written to `metrics_path`, reports/sft.json)."""
    from atlas.llm.models import load_causal_lm, load_tokenizer, resolve_device, save_model, setup_torch
    from atlas.training.checkpoints import last_checkpoint, snapshot, weight_change
    from atlas.training.configs import check_stage_args
    from atlas.training.trl_compat import score_completions_only

    check_stage_args(cfg, "sft")
    setup_torch(cfg.models.num_threads, cfg.sft.seed)
    device = resolve_device(cfg.models.device)
    tokenizer = load_tokenizer(teacher_dir, cfg.models.teacher.trust_remote_code)
    model = load_causal_lm(teacher_dir, cfg.models.teacher, device=device)
    if not cfg.sft.enabled:
        log.info("sft.enabled is false: the SFT checkpoint is the base teacher")
        save_model(model, tokenizer, out_dir)
        metrics = {"enabled": False, "steps": 0, "weight_change": 0.0}
        write_json(metrics_path, metrics)
        return metrics

    probes = load_probes("train") if paths.PROBES.exists() else {}
    rows = build_sft_rows(read_jsonl(paths.SFT_DATA), tokenizer, probes, cfg)
    if not rows:
        raise AtlasError(f"{paths.SFT_DATA} has no rows with teaching text: SFT needs demonstrations")
    resume = last_checkpoint(Path(work_dir), fingerprint(cfg, Path(teacher_dir), rows))
    if resume:
        log.info("resuming SFT from %s", resume)
    before = snapshot(model)
    trainer = _trainer(cfg, model, tokenizer, rows, device, work_dir)
    with score_completions_only(device):
        result = trainer.train(resume_from_checkpoint=resume)
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
        "resumed_from": Path(resume).name if resume else None,
        "examples": len(rows),
        "no_guidance_targets": sum(r["completion"].endswith("<teaching></teaching>") for r in rows),
        "train_loss": float(result.training_loss),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "weight_change": change,
    }
    write_json(metrics_path, metrics)
    shutil.rmtree(work_dir, ignore_errors=True)
    return metrics


def fingerprint(cfg: AtlasConfig, teacher_dir: Path, rows: list[dict]) -> str:
    """What defines an SFT run (its checkpoints are resumed only by the same run): the sections it reads, the
    teacher it starts from and the rows it trains on."""
    from atlas.llm.models import checkpoint_hash
    from atlas.training import checkpoints

    return checkpoints.fingerprint(
        {"config": cfg.model_dump(include={"sft", "models"}), "policy": checkpoint_hash(teacher_dir), "rows": rows}
    )


def _trainer(cfg: AtlasConfig, model, tokenizer, rows: list[dict], device: str, work_dir: Path):
    from datasets import Dataset
    from trl import SFTTrainer

    from atlas.training.callbacks import KeepCheckpoints, LogProgress, MlflowMetricsCallback
    from atlas.training.configs import lora_config, sft_config

    return SFTTrainer(
        model=model,
        args=sft_config(cfg, work_dir, device),
        train_dataset=Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]),
        processing_class=tokenizer,
        peft_config=lora_config(cfg.sft.lora),
        callbacks=[
            MlflowMetricsCallback(prefix="sft"),
            KeepCheckpoints(cfg.sft.save_total_limit),
            LogProgress("sft steps"),
        ],
    )
