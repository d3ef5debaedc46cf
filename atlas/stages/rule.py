"""Stage `rule`: the hand-rule baseline teacher, to measure what RL adds against.

The SFT stage's training with `sft.targets: visible` whatever the configuration says: the teacher stays silent where
attempts that look like the student's (same kind, finished or not) are right at least `1 - sft.wrong_threshold` of
the time on the train split, and writes the dataset's hint elsewhere. The decision is made by a person's rule from
train-split statistics, not learned; evaluation reports it beside the SFT and GRPO teachers (`evaluation.teachers`).
"""

from __future__ import annotations

from atlas.config import AtlasConfig
from atlas.core import paths
from atlas.stages import sft


def run(cfg: AtlasConfig) -> dict:
    """Train and save the hand-rule teacher to data/checkpoints/rule; metrics in reports/rule.json."""
    rule_cfg = cfg.model_copy(update={"sft": cfg.sft.model_copy(update={"targets": "visible"})})
    return sft.run(rule_cfg, out_dir=paths.RULE_CHECKPOINT, metrics_path=paths.RULE_METRICS, work_dir=paths.RULE_WORK)
