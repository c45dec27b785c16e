"""Tracking below the pipeline: the RunLogger interface and its MLflow implementation, the store (liveness, gc),
what a run logs (params, digests, redaction) and run lookups. The tools on top (`harness runs`, run replay,
sweeps) are in harness.runs."""
