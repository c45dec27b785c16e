"""Above the pipeline: `harness runs` (cli), run replay (replay: reruns a logged run through the pipeline) and the
sweep's parent run (sweep: a Hydra callback that drives the pipeline's jobs). See harness/layers.py."""
