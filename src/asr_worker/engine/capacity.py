"""How many audio channels the engine can decode in real time, from what decoding costs here.

Decoding is the engine's bottleneck, and its cost depends on the machine (its processor, what
else runs on it), so it is measured, not configured: at start the provider decodes a short
recording of speech (`calibrate`), and from then on every final's decode updates the figure
(`observe`, an exponentially weighted mean, so a machine that gets busier lowers it within a
minute of decodes, and a quieter one raises it again); while no final is decoded, the provider
measures it again every 15 s (`remeasure`), so that a fallback standing by knows what the
machine can give it when an outage moves calls onto it.

    channels = decoders x finals_share / (cost x voiced_share)

* `cost`: wall seconds of decoding per second of audio, one decode per decoder thread;
* `voiced_share`: seconds of audio decoded per second of a channel. A leg of a conversation
  speaks about half the time, and each utterance is decoded with its lead-in and padding (0.7 s
  around a few seconds of speech): 0.6 to begin with, then what the calls it carries really
  say: the finals' audio over the channel-seconds open, every `SHARE_WINDOW_S` with enough of
  them (`opened`, `closed`), so that a worker whose calls talk more carries fewer of them;
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

FINALS_SHARE: Final = 0.3
VOICED_SHARE: Final = 0.6
SMOOTHING: Final = 0.02  # weight of one final's decode in the running cost
REMEASURE_WEIGHT: Final = 0.3  # weight of one measurement while idle
MIN_AUDIO_S: Final = 0.5  # shorter decodes say little of the cost per second (fixed costs dominate)
SHARE_WINDOW_S: Final = 20.0  # how often the voiced share is measured...
SHARE_MIN_CHANNEL_S: Final = 120.0  # ...from at least this many channel-seconds
SHARE_SMOOTHING: Final = 0.3
SHARE_BOUNDS: Final = (0.3, 1.2)  # a leg says nothing, or talks on with lead-ins between


@dataclass(slots=True)
class CapacityModel:
    decoders: int
    finals_share: float = FINALS_SHARE
    voiced_share: float = VOICED_SHARE
    cost_s: float = math.nan  # wall seconds per audio second; nan until calibrated
    fixed: int | None = None  # set by configuration (ASR_LOCAL_CAPACITY): no measuring
    open_channels: int = 0
    _since: float | None = None  # start of the voiced-share window
    _last: float = 0.0  # when open_channels last changed or was counted
    _channel_s: float = 0.0  # channel-seconds open in the window
    _final_audio_s: float = 0.0  # audio decoded for finals in the window
    _observed_at: float | None = None  # when a final was last decoded

    def calibrate(self, audio_s: float, wall_s: float) -> None:
        """The start's measurement: replaces whatever was known."""
        if audio_s > 0:
            self.cost_s = max(wall_s, 1e-6) / audio_s

    def remeasure(self, audio_s: float, wall_s: float) -> None:
        """A measurement while no final is decoded (the provider's idle check): weighs like a
        third of what was known, so a few of them follow a machine that got busier or quieter."""
        if audio_s > 0:
            cost = max(wall_s, 1e-6) / audio_s
            self.cost_s = (
                cost if math.isnan(self.cost_s) else self.cost_s + REMEASURE_WEIGHT * (cost - self.cost_s)
            )

    def idle_since(self, now: float) -> float:
        """Seconds since the last final was decoded (since the start, if none was)."""
        if self._observed_at is None:
            self._observed_at = now
        return now - self._observed_at

    def opened(self, channels: int, now: float) -> None:
        """A stream of `channels` began (monotonic seconds)."""
        self._count(now)
        self.open_channels += channels

    def closed(self, channels: int, now: float) -> None:
        self._count(now)
        self.open_channels = max(0, self.open_channels - channels)

    def _count(self, now: float) -> None:
        if self._since is None:
            self._since = now
        self._channel_s += self.open_channels * max(0.0, now - self._last)
        self._last = now
        if now - self._since >= SHARE_WINDOW_S:
            if self._channel_s >= SHARE_MIN_CHANNEL_S:
                share = min(SHARE_BOUNDS[1], max(SHARE_BOUNDS[0], self._final_audio_s / self._channel_s))
                self.voiced_share += SHARE_SMOOTHING * (share - self.voiced_share)
            self._since, self._channel_s, self._final_audio_s = now, 0.0, 0.0

    def observe(self, audio_s: float, wall_s: float, now: float | None = None) -> None:
        """A final's decode (finished at `now`): moves the running cost towards it, and counts
        its audio towards the voiced share."""
        if now is not None:
            self._count(now)
            self._final_audio_s += audio_s
            self._observed_at = now
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
