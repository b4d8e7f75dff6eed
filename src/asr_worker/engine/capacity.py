"""How many audio channels the engine can decode in real time, from what decoding costs here.

Decoding is the engine's bottleneck, and its cost depends on the machine (its processor, what
else runs on it), so it is measured, not configured: at start the provider decodes a short
recording of speech (`calibrate`), and from then on every final's decode updates the figure
(`observe`, an exponentially weighted mean, so a machine that gets busier lowers it within a
minute of decodes, and a quieter one raises it again).

    channels = decoders x finals_share / (cost x voiced_share)

* `cost`: wall seconds of decoding per second of audio, one decode per decoder thread;
* `voiced_share`: seconds of audio decoded per second of a channel. A leg of a conversation
  speaks about half the time, and each utterance is decoded with its lead-in and padding (0.7 s
  around a few seconds of speech): 0.6;
* `finals_share`: of the decoders' time, what finals may be planned to use. The rest is
  headroom, so that finals rarely queue behind one another (a final waits for a free decoder
  less often the more of them idle), and what interims and the event loop's own work (VAD,
  resampling, sockets: on the same cores) take.

`finals_share` was set so that the figure sits just below what the capacity benchmark sustains
on the project's machine (`bench.local --parts capacity`, docs/performance.md): admission then
refuses a call before the calls already admitted fall behind, not after.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

FINALS_SHARE: Final = 0.35
VOICED_SHARE: Final = 0.6
SMOOTHING: Final = 0.02  # weight of one final's decode in the running cost
MIN_AUDIO_S: Final = 0.5  # shorter decodes say little of the cost per second (fixed costs dominate)


@dataclass(slots=True)
class CapacityModel:
    decoders: int
    finals_share: float = FINALS_SHARE
    voiced_share: float = VOICED_SHARE
    cost_s: float = math.nan  # wall seconds per audio second; nan until calibrated
    fixed: int | None = None  # set by configuration (ASR_LOCAL_CAPACITY): no measuring

    def calibrate(self, audio_s: float, wall_s: float) -> None:
        """The start's measurement: replaces whatever was known."""
        if audio_s > 0:
            self.cost_s = max(wall_s, 1e-6) / audio_s

    def observe(self, audio_s: float, wall_s: float) -> None:
        """A final's decode: moves the running cost towards it."""
        if audio_s < MIN_AUDIO_S:
            return
        cost = max(wall_s, 1e-6) / audio_s
        self.cost_s = cost if math.isnan(self.cost_s) else self.cost_s + SMOOTHING * (cost - self.cost_s)

    @property
    def channels(self) -> int | None:
        """Channels the engine can carry at once (a two-leg call is two); None until measured."""
        if self.fixed is not None:
            return self.fixed
        if math.isnan(self.cost_s):
            return None
        return max(1, math.floor(self.decoders * self.finals_share / (self.cost_s * self.voiced_share)))
