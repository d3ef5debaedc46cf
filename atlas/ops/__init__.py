"""Layer 7, operations around the stages: MLflow tracking (`tracking`), running a stage inside its MLflow run
(`runner`), the gate (`gate`), the model registry (`registry`), the results table read back from MLflow (`results`),
multi-GPU launching (`launcher`), THE pipeline driver that `atlas run` and the Prefect flow share (`pipeline`), and
the environment checks of `atlas doctor` (`doctor`)."""
