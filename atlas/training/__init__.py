"""Layer 5, the TRL glue that the SFT and GRPO stages share: TRL's and PEFT's own config classes built from the
pipeline's sections (`configs`), the GRPO rollout of the frozen student and the reward callables over it
(`rollout`, TRL's reward convention), the MLflow metrics callback (`callbacks`), checkpoint helpers
(`checkpoints`) and the one guarded patch of a TRL internal (`trl_compat`). TRL, transformers and torch are imported
inside the functions that need them (importing TRL costs seconds)."""
