"""Where one GRPO step's time goes, on the active preset (default: params.yaml's, e.g. `cpu`).

Runs `atlas.stages.grpo.run` for a few steps in a scratch folder (the project's own `data/checkpoints/sft` and
`data/probe` are read, nothing of the project is written) with timers around the parts of a step:

- teacher generation (TRL's `_generate`: the policy samples the completions),
- rewards (TRL's `_calculate_rewards`), of which the student's generation and log-probability scoring,
- policy forward (TRL's `_get_per_token_logps_and_entropies` on the policy: old/current log-probs),
- reference forward (the same on the reference model, when `grpo.beta` > 0),
- the rest of `training_step` (backward, optimizer, TRL bookkeeping).

Usage (after the pipeline has run up to `sft`, e.g. `make run` or `dvc repro sft`):

    python benchmarks/grpo_step_profile.py --steps 3 [--set grpo.beta=0.0 ...]

Prints a table of seconds per step and shares, with the CPU and the load average (a busy machine is much slower:
docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import platform
import tempfile
import time
from pathlib import Path

TIMES: dict[str, float] = collections.defaultdict(float)


def _timed(owner, name: str, label, *, method: bool = True) -> None:
    """Wrap `owner.name` to add its wall time to TIMES[label(args)]."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            TIMES[label(*args) if callable(label) else label] += time.perf_counter() - start

    setattr(owner, name, wrapper)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], help="config override key.path=value")
    args = parser.parse_args()

    import atlas.core.paths as paths
    from atlas.config import load_config
    from atlas.llm.models import native_bf16
    from atlas.llm.student import load_student
    from atlas.stages import grpo
    from atlas.training.dynamic import DynamicGRPOTrainer

    missing = [str(p) for p in (paths.SFT_CHECKPOINT, paths.PROBES) if not p.exists()]
    if missing:
        raise SystemExit(f"grpo_step_profile: {', '.join(missing)} missing: run the pipeline first (`make run`)")
    cfg = load_config(overrides=[f"grpo.max_steps={args.steps}", *args.set])
    student = load_student(cfg)
    _timed(student, "generate", "rewards: student generation")
    _timed(student, "logprob", "rewards: student log p(gold)")
    _timed(DynamicGRPOTrainer, "_generate", "teacher generation")
    _timed(DynamicGRPOTrainer, "_calculate_rewards", "rewards (total)")
    _timed(
        DynamicGRPOTrainer,
        "_get_per_token_logps_and_entropies",
        lambda self, model, *a: "reference forward" if model is getattr(self, "ref_model", None) else "policy forward",
    )
    _timed(DynamicGRPOTrainer, "training_step", "training_step (total)")

    with tempfile.TemporaryDirectory() as scratch:
        paths.GRPO_METRICS = Path(scratch) / "grpo.json"  # keep the project's reports as they are
        start = time.perf_counter()
        metrics = grpo.run(cfg, out_dir=Path(scratch) / "grpo", work_dir=Path(scratch) / "work", student=student)
        total = time.perf_counter() - start

    steps = max(metrics.get("steps", args.steps), 1)
    inner = sum(TIMES[k] for k in ("teacher generation", "rewards (total)", "policy forward", "reference forward"))
    TIMES["backward, optimizer, rest"] = TIMES["training_step (total)"] - inner
    batch = cfg.grpo.per_device_train_batch_size * cfg.grpo.gradient_accumulation_steps
    print(f"CPU: {_cpu()}; native bf16: {native_bf16()}; load average: {os.getloadavg()[0]:.1f}")
    print(
        f"preset {cfg.preset}: {steps} steps of {batch}"
        f" completions ({cfg.grpo.num_generations} per prompt), teacher dtype {cfg.models.teacher.dtype},"
        f" beta {cfg.grpo.beta}, dynamic rounds {cfg.grpo.dynamic_sampling_rounds}; run {total:.1f} s"
    )
    step_total = TIMES["training_step (total)"]
    print("| part | s/step | share of a step |\n|---|---:|---:|")
    for key in (
        "teacher generation",
        "rewards (total)",
        "rewards: student generation",
        "rewards: student log p(gold)",
        "policy forward",
        "reference forward",
        "backward, optimizer, rest",
        "training_step (total)",
    ):
        share = TIMES[key] / step_total if step_total else 0.0
        print(f"| {key} | {TIMES[key] / steps:.1f} | {share:.0%} |")
    print(
        f"groups: {metrics.get('effective_groups')} reached the optimizer, {metrics.get('generated_groups')} generated"
    )


if __name__ == "__main__":
    main()
