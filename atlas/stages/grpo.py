"""Stage `grpo`: GRPO of the teacher with the non-degradation reward (+ likelihood, RIM).

TRL's `GRPOTrainer` (with its own `GRPOConfig`, `atlas.training.configs`) on the teacher prompts (question + the
student's cached probe).

On-policy by construction: TRL samples from the current policy each step, and the prompt the loss is taken under is
the exact rendered teacher prompt that produced the sample (the published trainer used another prompt there).
Rewards (`atlas.training.rollout`): the non-degradation teaching reward, the dense likelihood reward and RIM,
weighted by `reward.*_weight`. Checkpoints land in `data/work/grpo/` (the newest `grpo.save_total_limit` are kept);
a run that is killed resumes from its last complete checkpoint when the inputs and the configuration are unchanged (a
fingerprint guards against resuming someone else's run) and ends with the weights of the uninterrupted run.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

from atlas.config import AtlasConfig
from atlas.core import paths
from atlas.core.errors import AtlasError
from atlas.core.io import write_json
from atlas.stages.probe import load_probes
from atlas.teaching.protocol import render_teacher_prompt
from atlas.teaching.records import ProbeRecord

log = logging.getLogger(__name__)

# The GRPO curve of `dvc plots show` (reports/plots/grpo_curve.json, one record per logged step; "/" becomes "_").
CURVE_KEYS = (
    "reward",
    "rewards/teaching/mean",
    "rewards/likelihood/mean",
    "rewards/rim/mean",
    "kl",
    "teach/taught_accuracy",
    "teach/degradation_rate",
)


def grpo_rows(probes: dict[str, ProbeRecord], tokenizer, probe_kind: str = "approach") -> list[dict]:
    return [
        {"prompt": render_teacher_prompt(tokenizer, p.problem, p.probe, probe_kind), "id": p.id}
        for p in probes.values()
    ]


def fingerprint(cfg: AtlasConfig, sft_dir: Path) -> str:
    """What defines a GRPO run: the sections it reads, the SFT policy it starts from and the probes."""
    from atlas.llm.models import checkpoint_hash
    from atlas.training import checkpoints

    return checkpoints.fingerprint(
        {
            "config": cfg.model_dump(include={"grpo", "reward", "protocol", "models", "rim"}),
            "policy": checkpoint_hash(sft_dir),
            "probes": hashlib.sha256(paths.PROBES.read_bytes()).hexdigest(),
        }
    )


def run(
    cfg: AtlasConfig,
    sft_dir: Path = paths.SFT_CHECKPOINT,
    out_dir: Path = paths.GRPO_CHECKPOINT,
    work_dir: Path = paths.GRPO_WORK,
    student=None,
    callbacks: list | None = None,
) -> dict:
    """Train the teacher with GRPO from the SFT checkpoint; returns metrics (also in reports/grpo.json)."""
    from atlas.llm.models import load_causal_lm, load_tokenizer, resolve_device, save_model, setup_torch
    from atlas.llm.student import load_student
    from atlas.teaching.report import curve_records
    from atlas.training.checkpoints import last_checkpoint, snapshot, weight_change
    from atlas.training.configs import check_stage_args
    from atlas.training.rollout import TeachingRollout, make_reward_funcs
    from atlas.training.trl_compat import score_completions_only

    check_stage_args(cfg, "grpo")
    setup_torch(cfg.models.num_threads, cfg.grpo.seed)
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
    for callback in [*_rim_explanations(funcs), *(callbacks or [])]:
        trainer.add_callback(callback)
    with score_completions_only(device):
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
        **_dynamic_summary(trainer.dynamic_totals),
        "reward_functions": [f.__name__ for f in funcs],
        "reward_weights": weights,
        "first": _pick(history[0] if history else {}),
        "last": _pick(history[-2] if len(history) > 1 else (history[-1] if history else {})),
    }
    write_json(paths.GRPO_METRICS, metrics)
    write_json(paths.GRPO_CURVE, curve_records(history, CURVE_KEYS))
    shutil.rmtree(work_dir, ignore_errors=True)
    return metrics


def _rim_explanations(funcs) -> list:
    """The callback that logs the RIM reward's explanations to MLflow (none without a RIM reward)."""
    from atlas.training.callbacks import MlflowRimExplanationsCallback
    from atlas.training.rollout import RolloutRIMReward

    return [MlflowRimExplanationsCallback(f) for f in funcs if isinstance(f, RolloutRIMReward)]


def _dynamic_summary(totals: dict) -> dict:
    """What reached the optimizer over the run (this process; a resumed run counts from its resume point)."""
    groups, zero = totals["groups"], totals["zero_std_groups"]
    return {
        "effective_groups": groups,
        "effective_groups_with_variance": groups - zero,
        "effective_frac_zero_std": zero / groups if groups else None,
        "generated_groups": totals["generated_groups"],
    }


def _pick(entry: dict) -> dict:
    keep = ("reward", "reward_std", "kl", "teach/", "rewards/", "rim_rewards/", "escalation_rate", "effective_")
    return {k: v for k, v in entry.items() if isinstance(v, int | float) and k.startswith(keep)}


def _trainer(cfg, model, tokenizer, rows, funcs, weights, work_dir: Path, device: str):
    from datasets import Dataset

    from atlas.training.callbacks import KeepCheckpoints, LogProgress, MlflowMetricsCallback
    from atlas.training.configs import grpo_config
    from atlas.training.dynamic import DynamicGRPOTrainer

    return DynamicGRPOTrainer(
        rows=rows,
        rounds=cfg.grpo.dynamic_sampling_rounds,
        seed=cfg.grpo.seed,
        model=model,
        reward_funcs=funcs,
        args=grpo_config(cfg, work_dir, device, weights),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[
            MlflowMetricsCallback(prefix="grpo"),
            KeepCheckpoints(cfg.grpo.save_total_limit),
            LogProgress("grpo steps"),
        ],
    )
