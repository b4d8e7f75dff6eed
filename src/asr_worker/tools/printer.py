"""One line per event, the same for every command that shows a call's events (`stream`,
`publish --follow`, `transcribe`): whatever route or bus carried them, a call reads the same.

A line is `[CALL] KIND DETAILS`: the call's id, the event's type (`interim` or `final` for a
transcript), and what matters of it, in words: a transcript's channel, span and text; where
a call moved and why (`provider_changed`); that a call continues another worker's
(`resumed`); a keypad digit; what a reader lost; an error's code and message. A type this
module does not know yet is shown with its fields as JSON, so nothing a newer worker sends is
hidden. A transcript without words (a final that only confirms a flush or covers silence) is
no line: there is nothing to read in it; `--json` shows every event whole.

`describe` is pure (an event in, a line or None out), so each command decides where its
lines go: `stream` and `publish --follow` print every one; `transcribe` keeps stdout for the
transcript and puts the rest on stderr.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Final

Event = Mapping[str, object]

# The fields every event carries, which a line never repeats.
_ENVELOPE: Final = frozenset({"type", "interaction_id", "tenant_id", "seq", "timestamp_ms"})
# A transcript's label and a channel and span take these widths, so that texts line up.
_KIND_WIDTH: Final = 7


def describe(event: Event, *, call: str | None = None) -> str | None:
    """The event's line; None for a transcript without words. `call` names the call in the
    line (the event's own `interaction_id` when not given; "" for no prefix)."""
    kind = str(event.get("type", "?"))
    who = call if call is not None else str(event.get("interaction_id") or "")
    prefix = f"[{who}] " if who else ""
    if kind == "transcript":
        text = str(event.get("text") or "")
        if not text.strip():
            return None
        label = "final" if event.get("is_final") else "interim"
        return f"{prefix}{label:<{_KIND_WIDTH}} {transcript_line(event)}"
    shown = _DETAILS.get(kind)
    details = shown(event) if shown is not None else _fields(event)
    return f"{prefix}{kind:<{_KIND_WIDTH}} {details}".rstrip()


def transcript_line(event: Event) -> str:
    """A transcript's channel, span (seconds of call time) and text: `ch0   1.24-2.80   how can I help`."""
    return (
        f"ch{event.get('channel', 0)} {_span(event.get('start'), event.get('end'))} {event.get('text', '')}"
    )


def _span(start: object, end: object) -> str:
    return f"{_seconds(start):>7}-{_seconds(end):<7}"


def _seconds(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "?"
    return f"{value:.2f}"


def _at(value: object) -> str:
    return f"{_seconds(value)} s"


def _plural(count: object, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _session_started(e: Event) -> str:
    """What a route told of the call: a route that is not the worker's own (dg-server, an
    AudioHook `opened`) says less, and only what it says is shown."""
    parts = [f"on {e['provider']}"] if e.get("provider") else []
    if "encoding" in e:
        parts.append(f"{e['encoding']} {e.get('sample_rate')} Hz")
    if "channels" in e:
        parts.append(_plural(e["channels"], "channel"))
    text = ", ".join(parts)
    if e.get("resumed"):
        text += f"; resumed: continues the call from {_at(e.get('offset_s'))} (another worker began it)"
    return text


def _session_ended(e: Event) -> str:
    parts = [f"reason {e.get('reason')}"]
    if "audio_s" in e:
        parts.append(f"{_at(e['audio_s'])} of audio")
    if "finals" in e:
        parts.append(_plural(e["finals"], "final"))
    if "reconnects" in e:
        parts.append(_plural(e["reconnects"], "reconnect"))
    if e.get("provider"):
        parts.append(f"on {e['provider']}")
    return ", ".join(parts)


def _provider_changed(e: Event) -> str:
    return f"{e.get('from')} -> {e.get('to')} ({e.get('reason')}), transcribing from {_at(e.get('at'))}"


def _error(e: Event) -> str:
    return f"{e.get('code')}: {e.get('message')}"


def _dtmf(e: Event) -> str:
    return f"digit {e.get('digit')} on ch{e.get('channel', 0)} at {_at(e.get('at'))}"


def _speech_started(e: Event) -> str:
    return f"ch{e.get('channel', 0)} at {_at(e.get('timestamp'))}"


def _utterance_end(e: Event) -> str:
    return f"ch{e.get('channel', 0)}, last word ended at {_at(e.get('last_word_end'))}"


def _events_dropped(e: Event) -> str:
    return f"{_plural(e.get('count'), 'event')} lost here: this reader fell too far behind"


def _pause(e: Event) -> str:
    return f"at {_at(e.get('at'))}" if "at" in e else _fields(e)


def _fields(e: Event) -> str:
    """What a type without its own line carries, as JSON."""
    rest = {k: v for k, v in e.items() if k not in _ENVELOPE}
    return json.dumps(rest, ensure_ascii=False) if rest else ""


_DETAILS: Final[dict[str, Callable[[Event], str]]] = {
    "session_started": _session_started,
    "session_ended": _session_ended,
    "provider_changed": _provider_changed,
    "error": _error,
    "dtmf": _dtmf,
    "speech_started": _speech_started,
    "utterance_end": _utterance_end,
    "events_dropped": _events_dropped,
    "paused": _pause,
    "resumed": _pause,
}
