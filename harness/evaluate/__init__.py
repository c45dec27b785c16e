"""Evaluation of a fitted circuit on its out-of-sample rows: report numbers, per-signal attribution, the report
page (`harness.evaluate.report`)."""
