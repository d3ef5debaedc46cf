"""Dynamic sampling for GRPO (as in DAPO): groups whose rewards are all equal carry no learning signal (their
advantages are zero), so they are replaced by groups of fresh prompts before the batch reaches the optimizer.

TRL 1.16's `GRPOTrainer` counts such groups (`frac_reward_zero_std`) but trains on them. `DynamicGRPOTrainer`
generates up to `rounds` extra sets of groups per batch, from prompts drawn from the training rows, and swaps groups
that have reward variance in for the zero-variance ones; the batch keeps its size, so memory and the loss are as
before. It counts what reaches the optimizer: `effective_groups` (groups in the batch), `effective_frac_zero_std`
(the share of them still without variance) and `dynamic_rounds`, logged per step beside TRL's own metrics (MLflow:
`grpo/effective_groups`, ...). The fresh prompts depend only on the seed and the step, so a resumed run draws the same
ones. With `rounds: 0` nothing is resampled and the counts equal TRL's.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from trl import GRPOTrainer

log = logging.getLogger(__name__)

_LEFT_PADDED = ("prompt_ids", "prompt_mask")


def zero_variance_groups(advantages, group_size: int) -> list[int]:
    """Indices of the groups (consecutive runs of `group_size` rows) whose advantages are all zero."""
    grouped = advantages.view(-1, group_size)
    return [i for i in range(grouped.shape[0]) if bool((grouped[i].abs() < 1e-6).all())]


def merge_batches(parts: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Row-wise concatenation of TRL batch dicts with the same keys: prompt tensors are left-padded and per-token
    completion tensors right-padded to the widest part (`num_items_in_batch` is dropped: the caller recounts)."""
    import torch

    out = {}
    for key, first in parts[0].items():
        if key == "num_items_in_batch" or not torch.is_tensor(first):
            continue
        values = [p[key] for p in parts]
        if first.dim() == 2:
            width = max(v.shape[1] for v in values)
            fill = pad_id if key.endswith("_ids") else 0
            values = [_pad(v, width, fill, left=key in _LEFT_PADDED) for v in values]
        out[key] = torch.cat(values, dim=0)
    return out


def _pad(t, width: int, fill, left: bool):
    import torch

    extra = width - t.shape[1]
    if extra <= 0:
        return t
    pad = t.new_full((t.shape[0], extra), fill)
    return torch.cat([pad, t] if left else [t, pad], dim=1)


class DynamicGRPOTrainer(GRPOTrainer):
    """`GRPOTrainer` that replaces zero-variance groups by groups of fresh prompts from `rows` (at most `rounds`
    extra generation rounds per batch) and logs what reaches the optimizer."""

    def __init__(self, *args, rows: list[dict] | None = None, rounds: int = 0, seed: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.dynamic_rows = list(rows or [])
        self.dynamic_rounds = rounds if self.dynamic_rows else 0
        self.dynamic_seed = seed
        if self.dynamic_rounds and self.accelerator.num_processes > 1:
            log.warning("grpo.dynamic_sampling_rounds is ignored with %d processes", self.accelerator.num_processes)
            self.dynamic_rounds = 0
        self.dynamic_totals = {"groups": 0, "zero_std_groups": 0, "generated_groups": 0, "steps": 0}

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        if not self.model.training:
            return out
        g = self.num_generations
        n_groups = len(inputs) // g
        zero = zero_variance_groups(out["advantages"], g)
        generated, rounds = n_groups, 0
        rows = list(range(len(inputs)))  # row i of the batch comes from row rows[i] of the merged parts
        parts, offset = [out], len(inputs)
        while zero and rounds < self.dynamic_rounds:
            rounds += 1
            ask = min(n_groups, len(zero) + 1)  # one spare: some fresh groups have no variance either
            rng = random.Random(f"{self.dynamic_seed}:{self.state.global_step}:{rounds}")
            picks = rng.sample(range(len(self.dynamic_rows)), min(ask, len(self.dynamic_rows)))
            fresh = [dict(self.dynamic_rows[i]) for i in picks for _ in range(g)]
            new = super()._generate_and_score_completions(fresh)
            generated += len(picks)
            new_zero = set(zero_variance_groups(new["advantages"], g))
            useful = [i for i in range(len(picks)) if i not in new_zero][: len(zero)]
            for old_group, new_group in zip(zero[: len(useful)], useful, strict=True):
                for j in range(g):
                    rows[old_group * g + j] = offset + new_group * g + j
            zero = zero[len(useful) :]
            parts.append(new)
            offset += len(fresh)
        if len(parts) > 1:
            merged = merge_batches(parts, self.processing_class.pad_token_id)
            import torch

            index = torch.tensor(rows, dtype=torch.long)
            kept = {key: value[index] for key, value in merged.items()}
            kept["num_items_in_batch"] = self.accelerator.gather(kept["completion_mask"].sum()).sum()
            out = {key: kept.get(key, value) for key, value in out.items()}  # TRL reads the first key's length
        metrics = self._metrics["train"]
        metrics["effective_groups"].append(float(n_groups))
        metrics["effective_frac_zero_std"].append(len(zero) / n_groups if n_groups else 0.0)
        metrics["dynamic_rounds"].append(float(rounds))
        totals = self.dynamic_totals
        totals["groups"] += n_groups
        totals["zero_std_groups"] += len(zero)
        totals["generated_groups"] += generated
        totals["steps"] += 1
        return out
