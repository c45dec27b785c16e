"""Replay support: the events-table contract shared by every backend, samplers and labels (`hs.replay`).

rec = hs.replay.record(kernel, events, sampler=hs.replay.every_n(10), labels=[("mid", (1.0, 5.0), "return")])
rec.table      # t, source, outputs, label_mid_return_1s, label_mid_return_5s
rec.dropped    # {"no_horizon": ..., "invalid_label": ...}
"""

from harness.replay.labels import KINDS, Label, LabelError, label_name
from harness.replay.record import Recording, record
from harness.replay.sampling import Sampler, SamplerError, every_event, every_n, time_grid, when

__all__ = [
    "KINDS",
    "Label",
    "LabelError",
    "Recording",
    "Sampler",
    "SamplerError",
    "every_event",
    "every_n",
    "label_name",
    "record",
    "time_grid",
    "when",
]
