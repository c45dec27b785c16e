"""Tracking: the MLflow store, what a run logs, sweep parent runs, and the run tools (`harness runs`)."""
