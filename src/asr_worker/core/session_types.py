"""What a session core is made with and what it counts: its configuration (`SessionConfig`,
and the settings that set it), where a call another worker began continues (`Resume`), and
its counters (`SessionStats`). Plain values, compiled with the core (setup.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..settings import Section, Setting, int_range, seconds


@dataclass(frozen=True, slots=True)
class SessionConfig:
    max_buffer_ms: int = 100
    send_chunk_ms: int = 50
    max_message_ms: int = 250
    keepalive_s: float = 3.0
    grace_s: float = 10.0
    finalize_timeout_s: float = 5.0
    max_retained_s: float = 60.0
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 8.0
    max_frames_per_s: int = 500  # audio messages per second per call; 0 = unlimited


SETTINGS: Final = Section(
    "session",
    "sessions: forwarding, keep-alive, end of call",
    SessionConfig,
    (
        Setting(
            "max_buffer_ms",
            "ASR_MAX_BUFFER_MS",
            "longest any audio waits in the worker before it is sent",
            int_range(1, 10_000),
        ),
        Setting(
            "keepalive_s",
            "ASR_KEEPALIVE_S",
            "send a KeepAlive after this many seconds without audio",
            seconds(0.1, 9.0),
        ),
        Setting(
            "grace_s",
            "ASR_SESSION_GRACE_S",
            "wait this long for a source to come back before finalizing",
            seconds(0.0, 3600.0),
        ),
        Setting(
            "send_chunk_ms",
            "ASR_SEND_CHUNK_MS",
            "send as soon as this much audio is waiting",
            int_range(1, 1000),
        ),
        Setting(
            "finalize_timeout_s",
            "ASR_FINALIZE_TIMEOUT_S",
            "wait for a provider's last results at call end; a final covering more restarts it "
            "(twice at most)",
            seconds(0.1, 120.0),
        ),
        Setting(
            "max_retained_s",
            "ASR_MAX_RETAINED_S",
            "most audio a call keeps for replay while its provider is away",
            seconds(1.0, 3600.0),
        ),
        Setting(
            "max_frames_per_s",
            "ASR_MAX_FRAMES_PER_S",
            "most audio messages a second per call; the excess is dropped with an error (0 = no limit)",
            int_range(0, 100_000),
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a call that another worker began continues (the Redis bus hands calls over).

    `offset` is the call byte offset of the first byte this session will receive: the point
    final results had covered, so the call's timeline (and every event time) continues from
    there. `seq` is the last event seq already published for the call; numbering continues
    after it. `finalized_s` is, per channel, how far (call seconds) words were already
    published as final: the provider re-hears that audio, and those words are not repeated.
    """

    offset: int
    seq: int
    finalized_s: tuple[float, ...] = ()


@dataclass(slots=True)
class SessionStats:
    """Counters the metrics endpoint sums over sessions; plain integers, cheap to bump."""

    frames_in: int = 0
    bytes_in: int = 0
    frames_reused: int = 0
    bytes_out: int = 0
    bytes_replayed: int = 0
    bytes_dropped: int = 0
    frames_rejected: int = 0
    frames_rate_limited: int = 0
    streams_opened: int = 0
    open_failures: int = 0
    drops: int = 0
    reconnects: int = 0
    keepalives: int = 0
    interims: int = 0
    finals: int = 0
    words_deduplicated: int = 0
    bytes_paused: int = 0  # received while paused: counted, never sent
    spans_redacted: int = 0  # entities and numbers replaced in finals
