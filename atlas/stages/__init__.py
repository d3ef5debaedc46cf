"""Layer 6: one module per pipeline stage, each a linear `run(cfg, ...) -> summary` (as open-r1's `main`): read its
inputs, do the work with the layers below, write its outputs, return what it measured. `STAGES` is THE stage list,
in pipeline order; `dvc.yaml` defines exactly these stages (a test checks it) and the CLI and the Prefect flow read
it from here. Stages know nothing of MLflow runs, the registry or Prefect (`atlas.ops` wraps them), and import their
heavy libraries inside `run`.
"""

STAGES = ("config", "models", "ingest", "validate", "probe", "sft", "rule", "grpo", "evaluate")
