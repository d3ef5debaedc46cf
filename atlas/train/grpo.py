"""GRPO stage: TRL's `GRPOTrainer` on the teacher prompts (question + the student's cached probe).

On-policy by construction: TRL samples from the current policy each step, and the prompt the loss is taken under is
the exact rendered teacher prompt that produced the sample (the published trainer used another prompt there).
Rewards: the non-degradation teaching reward, the dense likelihood reward and RIM, weighted by `reward.*_weight`.
Checkpoints land in `data/work/grpo/`; a run that is killed resumes from its last checkpoint when the inputs and the
configuration are unchanged (a fingerprint guards against resuming someone else's run).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

from atlas import paths
from atlas.config import AtlasConfig
from atlas.errors import AtlasError
from atlas.io import write_json
from atlas.probe import load_probes
from atlas.protocol import render_teacher_prompt

log = logging.getLogger(__name__)
FINGERPRINT = "fingerprint.json"


def grpo_rows(probes: dict[str, dict], tokenizer, probe_kind: str = "approach") -> list[dict]:
    return [
        {"prompt": render_teacher_prompt(tokenizer, p["problem"], p["probe"], probe_kind), "id": p["id"]}
        for p in probes.values()
    ]


def fingerprint(cfg: AtlasConfig, sft_dir: Path) -> str:
    from atlas.train.common import checkpoint_hash

    parts = {
        "config": cfg.model_dump(include={"grpo", "reward", "protocol", "models", "rim"}),
        "policy": checkpoint_hash(sft_dir),
        "probes": hashlib.sha256(paths.PROBES.read_bytes()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def last_checkpoint(work_dir: Path, expected: str) -> str | None:
    """The checkpoint to resume from, or None (and a clean work dir) when it belongs to another configuration."""
    from transformers.trainer_utils import get_last_checkpoint

    marker = work_dir / FINGERPRINT
    if work_dir.exists() and (not marker.exists() or marker.read_text().strip() != expected):
        log.info("discarding GRPO checkpoints in %s: they were made with other inputs", work_dir)
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(expected + "\n")
    return get_last_checkpoint(str(work_dir))


def run_grpo(
    cfg: AtlasConfig,
    sft_dir: Path = paths.SFT_CHECKPOINT,
    out_dir: Path = paths.GRPO_CHECKPOINT,
    work_dir: Path = paths.GRPO_WORK,
    student=None,
    callbacks: list | None = None,
) -> dict:
    """Train the teacher with GRPO from the SFT checkpoint; returns metrics (also in reports/grpo.json)."""
    from atlas.generation import load_student
    from atlas.models import load_causal_lm, load_tokenizer, resolve_device
    from atlas.train.common import save_model, setup_torch, snapshot, weight_change
    from atlas.train.teaching_rollout import TeachingRollout, make_reward_funcs

    setup_torch(cfg, cfg.grpo.seed)
    device = resolve_device(cfg.models.device)
    probes = load_probes("train")
    if not probes:
        raise AtlasError(f"{paths.PROBES} has no train problems: run the probe stage first")
    tokenizer = load_tokenizer(sft_dir, cfg.models.teacher.trust_remote_code)
    model = load_causal_lm(sft_dir, cfg.models.teacher, device=device)
    if student is None:
        student = load_student(cfg)
    rollout = TeachingRollout(
        cfg, student, probes, lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
    )
    funcs, weights = make_reward_funcs(cfg, rollout)
    if not funcs:
        raise AtlasError("every reward weight is 0: set reward.teaching_weight, likelihood_weight or rim_weight")
    resume = last_checkpoint(Path(work_dir), fingerprint(cfg, Path(sft_dir)))
    if resume:
        log.info("resuming GRPO from %s", resume)
    before = snapshot(model)
    rows = grpo_rows(probes, tokenizer, cfg.protocol.probe)
    trainer = _trainer(cfg, model, tokenizer, rows, funcs, weights, Path(work_dir), device)
    for callback in callbacks or []:
        trainer.add_callback(callback)
    trainer.train(resume_from_checkpoint=resume)
    if not trainer.accelerator.is_main_process:
        return {}  # under `accelerate launch` rank 0 saves and reports
    change = weight_change(before, trainer.model)
    if change == 0.0:
        log.warning("GRPO finished but the weights did not change: every group's rewards were equal (no advantage)")
    save_model(trainer.model, tokenizer, out_dir)
    history = trainer.state.log_history
    metrics = {
        "steps": trainer.state.global_step,
        "resumed_from": Path(resume).name if resume else None,
        "weight_change": change,
        "student_generations": student.calls,
        "reward_functions": [f.__name__ for f in funcs],
        "reward_weights": weights,
        "first": _pick(history[0] if history else {}),
        "last": _pick(history[-2] if len(history) > 1 else (history[-1] if history else {})),
    }
    write_json(paths.GRPO_METRICS, metrics)
    shutil.rmtree(work_dir, ignore_errors=True)
    return metrics


def _pick(entry: dict) -> dict:
    keep = ("reward", "reward_std", "kl", "teach/", "rewards/", "rim_rewards/", "escalation_rate")
    return {k: v for k, v in entry.items() if isinstance(v, int | float) and k.startswith(keep)}


def _trainer(cfg, model, tokenizer, rows, funcs, weights, work_dir: Path, device: str):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from atlas.train.callbacks import MlflowMetricsCallback
    from atlas.train.common import score_only_completions_on_cpu

    score_only_completions_on_cpu(device)
    g = cfg.grpo
    args = GRPOConfig(
        output_dir=str(work_dir),
        max_steps=g.max_steps,
        learning_rate=g.learning_rate,
        per_device_train_batch_size=g.per_device_train_batch_size,
        gradient_accumulation_steps=g.gradient_accumulation_steps,
        num_generations=g.num_generations,
        max_completion_length=cfg.protocol.teacher_max_tokens,
        temperature=g.temperature,
        beta=g.beta,
        loss_type=g.loss_type,
        reward_weights=weights,
        bf16=g.bf16,
        gradient_checkpointing=g.gradient_checkpointing,
        use_vllm=g.use_vllm,
        use_cpu=device == "cpu",
        save_strategy="steps",
        save_steps=g.save_steps,
        logging_steps=1,
        report_to="none",
        seed=g.seed,
        data_seed=g.seed,
        lr_scheduler_type="constant",
        dataloader_num_workers=0,
    )
    return GRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[MlflowMetricsCallback(prefix="grpo")],
    )
