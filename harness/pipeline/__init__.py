"""The experiment pipeline: Hydra config -> circuit, stream, trainer -> fit -> MLflow run (see README)."""
