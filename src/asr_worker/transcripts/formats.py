"""A transcript document written out: JSON (the whole document), WebVTT and SRT (one cue per
utterance, its speaker's role as the voice), plain text (one line per utterance).

Cues are the document's utterances in call-time order, their times call seconds. WebVTT names
the speaker with a voice span (`<v customer>`), escaping `&`, `<` and `>` in the text; SRT,
which has no voices, starts the text with the role. An utterance's text is one line: a line
break in it would end the cue.
"""

from __future__ import annotations

from typing import Final

from .. import jsonwire
from .document import Document, Utterance

FORMATS: Final = {
    "json": "application/json",
    "vtt": "text/vtt; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "txt": "text/plain; charset=utf-8",
}


def render(document: Document, fmt: str) -> bytes:
    """The document in `fmt` (a key of FORMATS)."""
    if fmt == "json":
        return jsonwire.dumps(document.wire())
    if fmt == "vtt":
        return vtt(document).encode()
    if fmt == "srt":
        return srt(document).encode()
    if fmt == "txt":
        return txt(document).encode()
    raise ValueError(f"format must be one of {', '.join(FORMATS)}")


def vtt(document: Document) -> str:
    cues = ["WEBVTT", ""]
    for number, u in enumerate(document.utterances, 1):
        start, end = _span(u)
        cues += [
            str(number),
            f"{_clock(start, '.')} --> {_clock(end, '.')}",
            f"<v {u.role}>{_escaped(u)}",
            "",
        ]
    return "\n".join(cues)


def srt(document: Document) -> str:
    cues: list[str] = []
    for number, u in enumerate(document.utterances, 1):
        start, end = _span(u)
        cues += [str(number), f"{_clock(start, ',')} --> {_clock(end, ',')}", f"{u.role}: {_line(u)}", ""]
    return "\n".join(cues)


def txt(document: Document) -> str:
    return "".join(f"[{_clock(u.start, '.')[:8]}] {u.role}: {_line(u)}\n" for u in document.utterances)


def _span(u: Utterance) -> tuple[float, float]:
    """A cue's times: a cue must end after it starts."""
    return u.start, max(u.end, u.start + 0.001)


def _clock(seconds: float, mark: str) -> str:
    """`HH:MM:SS.mmm` (WebVTT) or `HH:MM:SS,mmm` (SRT)."""
    ms = round(max(0.0, seconds) * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{mark}{ms:03d}"


def _line(u: Utterance) -> str:
    return " ".join(u.text.split())


def _escaped(u: Utterance) -> str:
    return _line(u).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
