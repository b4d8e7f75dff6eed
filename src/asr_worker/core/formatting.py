"""Deepgram's formatting options applied to a result's words, where the provider does not apply
them itself: the local engine for a call that asks (`providers/local.py`), and `dg-server`,
which answers as Deepgram does for whatever engine is behind it.

A call's `FormatOptions` (`call_options.py`) say what to do; a flag it does not name (None)
leaves the words as the engine wrote them. In order:

* `filler_words=false`: "uh", "um", "er", "hmm" and their spellings are dropped (Deepgram leaves
  them out unless asked; `true` keeps the ones the engine wrote);
* `punctuate=false` (and no `smart_format`): punctuation and capitals taken out, as Deepgram's
  unpunctuated transcript ("it's a test of ..."); an apostrophe or a digit's separator inside a
  word stays;
* `dictation=true` (with punctuation on, as Deepgram requires): "comma", "period", "full stop",
  "question mark", "exclamation mark/point", "colon", "semicolon", "new line" and "new
  paragraph" become their marks on the word before, and a sentence after one starts with a
  capital;
* `numerals=true` or `smart_format=true`: numbers said as words become digits, one number at a
  time as Deepgram writes them ("nine hundred" 900, "twenty three" 23, "nine two eight" 9 2 8,
  "five hundred and twelve" 512), and a written number loses its thousands separators (999999);
  `numerals=false` without `smart_format`: numbers written in digits become words ("$3.50"
  three dollars fifty cents, "21st" twenty first, "0426" zero four two six);
* `measurements=true`: a unit named after a number becomes its abbreviation (MEASUREMENTS:
  "33 grams" 33 g, "five milliliters" five ml);
* `replace`: each find (a word or phrase, without case or punctuation) becomes its replacement,
  or goes with an empty one;
* `profanity_filter=true`: every word of PROFANITY becomes asterisks, one per letter, its
  punctuation kept (Deepgram's "****").

The words a change makes share the times of the words they replace (spread evenly when one
becomes several); a result's text is its words joined. Redaction's tags (`[CREDIT_CARD_1]`,
`[REDACTED]`, asterisks) are never touched. Pure and clockless: a result in, a result out.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Final

from . import spoken_numbers as sn
from .call_options import FormatOptions
from .provider_events import TranscriptResult, Word

FILLERS: Final = frozenset({"uh", "uhh", "uhm", "um", "umm", "er", "erm", "hmm", "hm", "mm"})
PROFANITY: Final = frozenset(
    {
        "fuck", "fucks", "fucked", "fucker", "fuckers", "fucking", "fuckin", "motherfucker",
        "motherfuckers", "motherfucking", "shit", "shits", "shitty", "shitting", "bullshit",
        "bitch", "bitches", "bitching", "bastard", "bastards", "asshole", "assholes", "cunt",
        "cunts", "dickhead", "dickheads", "goddamn", "goddamned", "wanker", "wankers", "twat",
        "twats", "bollocks", "prick", "pricks", "slut", "sluts", "whore", "whores", "piss",
        "pissed", "arsehole", "arseholes", "cocksucker", "cocksuckers",
    }
)  # fmt: skip
MEASUREMENTS: Final = {
    "milligram": "mg", "milligrams": "mg", "microgram": "mcg", "micrograms": "mcg",
    "gram": "g", "grams": "g", "kilogram": "kg", "kilograms": "kg",
    "milliliter": "ml", "milliliters": "ml", "millilitre": "ml", "millilitres": "ml",
    "liter": "l", "liters": "l", "litre": "l", "litres": "l",
    "millimeter": "mm", "millimeters": "mm", "millimetre": "mm", "millimetres": "mm",
    "centimeter": "cm", "centimeters": "cm", "centimetre": "cm", "centimetres": "cm",
    "meter": "m", "meters": "m", "metre": "m", "metres": "m",
    "kilometer": "km", "kilometers": "km", "kilometre": "km", "kilometres": "km",
    "inch": "in", "inches": "in", "foot": "ft", "feet": "ft", "yard": "yd", "yards": "yd",
    "mile": "mi", "miles": "mi", "ounce": "oz", "ounces": "oz", "pound": "lb", "pounds": "lb",
}  # fmt: skip
# Spoken punctuation (`dictation`): the words, and the mark they become.
_DICTATION: Final = (
    (("question", "mark"), "?"),
    (("exclamation", "mark"), "!"),
    (("exclamation", "point"), "!"),
    (("full", "stop"), "."),
    (("new", "paragraph"), "\n\n"),
    (("new", "line"), "\n"),
    (("comma",), ","),
    (("period",), "."),
    (("colon",), ":"),
    (("semicolon",), ";"),
)
_SENTENCE_END: Final = (".", "?", "!", "\n")
_TAG: Final = re.compile(r"\W*\[[A-Za-z_]+(?:_\d+)?\]\W*|\*+")
_TAG_ITSELF: Final = re.compile(r"\[[A-Za-z_]+(?:_\d+)?\]|\*+")
_LEAD: Final = re.compile(r"^[^\w$£€]+")
_TRAIL: Final = re.compile(r"[^\w%]+$")
_THOUSANDS: Final = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_NUMERAL_KINDS: Final = frozenset(
    {sn.DIGITS, sn.UNIT, sn.OH, sn.TEEN, sn.TENS, sn.HUNDRED, sn.THOUSAND, sn.REPEAT}
)
_SCALE_KINDS: Final = frozenset({sn.HUNDRED, sn.THOUSAND})


@dataclass(slots=True)
class _Token:
    """A word being formatted: `word` as Deepgram's (lower case), `shown` as its
    `punctuated_word`; `kept` for a redaction tag, which nothing changes."""

    word: str
    shown: str
    start: float
    end: float
    confidence: float
    speaker: int | None
    kept: bool = False


@dataclass(frozen=True, slots=True)
class Formatter:
    """What a call's FormatOptions ask, resolved once (see the module's docstring)."""

    drop_fillers: bool
    strip: bool  # punctuation and capitals out
    dictation: bool
    digits: bool  # numbers as digits
    spell: bool  # numbers as words
    measurements: bool
    profanity: bool
    replace: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]  # (find words, replacement words)

    @classmethod
    def of(cls, options: FormatOptions) -> Formatter | None:
        """The formatter for these options; None when they change nothing."""
        smart = options.smart_format is True
        strip = options.punctuate is False and not smart
        digits = options.numerals is True or smart
        formatter = cls(
            drop_fillers=options.filler_words is False,
            strip=strip,
            dictation=options.dictation is True and not strip,
            digits=digits,
            spell=options.numerals is False and not digits,
            measurements=options.measurements is True,
            profanity=options.profanity_filter is True,
            replace=tuple(
                (tuple(_plain(find).split()), tuple(replacement.split()))
                for find, replacement in options.replace
                if _plain(find)
            ),
        )
        changes = (
            formatter.drop_fillers,
            formatter.strip,
            formatter.dictation,
            formatter.digits,
            formatter.spell,
            formatter.measurements,
            formatter.profanity,
            bool(formatter.replace),
        )
        return formatter if any(changes) else None

    def result(self, result: TranscriptResult) -> TranscriptResult:
        """`result` as the options ask it written."""
        if not result.text and not result.words:
            return result
        tokens = _tokens(result)
        if self.drop_fillers:
            tokens = _without_fillers(tokens)
        if self.strip:
            tokens = _stripped(tokens)
        if self.dictation:
            tokens = _dictated(tokens)
        if self.digits:
            tokens = _as_digits(tokens)
        elif self.spell:
            tokens = _as_words(tokens, capitals=not self.strip)
        if self.measurements:
            _abbreviate(tokens)
        for find, replacement in self.replace:
            tokens = _replaced(tokens, find, replacement)
        if self.profanity:
            _mask(tokens)
        words = tuple(Word(t.word, t.start, t.end, t.confidence, t.shown, t.speaker) for t in tokens)
        return TranscriptResult(
            channel=result.channel,
            is_final=result.is_final,
            speech_final=result.speech_final,
            text=" ".join(t.shown for t in tokens),
            confidence=result.confidence,
            start=result.start,
            duration=result.duration,
            words=words if result.words else (),
            from_finalize=result.from_finalize,
            channels=result.channels,
            language=result.language,
            languages=result.languages,
            search=result.search,
            entities=result.entities if len(words) == len(result.words) else (),
        )


def _tokens(result: TranscriptResult) -> list[_Token]:
    if result.words:
        return [
            _Token(w.word, w.punctuated_word or w.word, w.start, w.end, w.confidence, w.speaker, _is_tag(w))
            for w in result.words
        ]
    # A provider that gives no words: the text's, all at the result's times.
    return [
        _Token(
            _plain(text) or text,
            text,
            result.start,
            result.end,
            result.confidence,
            None,
            _TAG.fullmatch(text) is not None,
        )
        for text in result.text.split()
    ]


def _is_tag(w: Word) -> bool:
    return _TAG.fullmatch(w.punctuated_word or w.word) is not None


def _plain(text: str) -> str:
    """A word as compared: lower case, without the punctuation around it."""
    return _TRAIL.sub("", _LEAD.sub("", text.lower())).strip("$£€%")


def _edges(shown: str) -> tuple[str, str, str]:
    """(the punctuation before, the word, the punctuation after)."""
    lead = _LEAD.match(shown)
    start = lead.end() if lead else 0
    trail = _TRAIL.search(shown, start)
    end = trail.start() if trail else len(shown)
    return shown[:start], shown[start:end], shown[end:]


def _spread(token: _Token, pieces: list[str]) -> list[_Token]:
    """`token` become `pieces` (its shown form's words), its time shared evenly; the first
    takes the punctuation before it, the last the punctuation after."""
    lead, _core, trail = _edges(token.shown)
    step = (token.end - token.start) / len(pieces)
    out = []
    for i, piece in enumerate(pieces):
        shown = (lead if i == 0 else "") + piece + (trail if i == len(pieces) - 1 else "")
        start = token.start + i * step
        out.append(
            _Token(
                piece.lower(),
                shown,
                round(start, 3),
                round(token.end if i == len(pieces) - 1 else start + step, 3),
                token.confidence,
                token.speaker,
            )
        )
    return out


def _joined(tokens: list[_Token], text: str, lead: str, trail: str) -> _Token:
    """`tokens` (in order) become one word, `text`, from the first's start to the last's end."""
    return _Token(
        text.lower(),
        lead + text + trail,
        tokens[0].start,
        tokens[-1].end,
        min(t.confidence for t in tokens),
        tokens[0].speaker,
    )


def _without_fillers(tokens: list[_Token]) -> list[_Token]:
    """The fillers dropped; a sentence that began with one begins with a capital still."""
    out: list[_Token] = []
    capital = False
    for t in tokens:
        if not t.kept and _plain(t.shown) in FILLERS:
            capital = capital or t.shown[:1].isupper()
            continue
        if capital and not t.kept:
            lead, core, trail = _edges(t.shown)
            t.shown = lead + core[:1].upper() + core[1:] + trail
        capital = False
        out.append(t)
    return out


def _stripped(tokens: list[_Token]) -> list[_Token]:
    out = []
    for t in tokens:
        if t.kept:  # the tag itself, without the punctuation around it
            tag = _TAG_ITSELF.search(t.shown)
            t.shown = tag.group(0) if tag is not None else t.shown
            out.append(t)
            continue
        _lead, core, _trail = _edges(t.shown)
        pieces = [piece for piece in core.lower().split("-") if piece]  # "twenty-three": two words
        if len(pieces) == 1:
            t.shown = t.word = pieces[0]
            out.append(t)
        elif pieces:  # (a token that is only punctuation goes)
            out += _spread(_Token(t.word, " ".join(pieces), t.start, t.end, t.confidence, t.speaker), pieces)
    return out


def _dictated(tokens: list[_Token]) -> list[_Token]:
    out: list[_Token] = []
    capital = False
    i = 0
    while i < len(tokens):
        mark, used = _command_at(tokens, i)
        if mark and out and not out[-1].kept:
            before = out[-1]
            lead, core, _trail = _edges(before.shown)
            before.shown = lead + core + mark
            capital = mark in _SENTENCE_END
            i += used
            continue
        t = tokens[i]
        if capital and not t.kept:
            lead, core, trail = _edges(t.shown)
            t.shown = lead + core[:1].upper() + core[1:] + trail
        capital = False
        out.append(t)
        i += 1
    return out


def _command_at(tokens: list[_Token], i: int) -> tuple[str, int]:
    for words, mark in _DICTATION:
        n = len(words)
        if i + n <= len(tokens) and all(
            not t.kept and _plain(t.shown) == w for t, w in zip(tokens[i : i + n], words, strict=True)
        ):
            return mark, n
    return "", 0


def _as_words(tokens: list[_Token], *, capitals: bool) -> list[_Token]:
    out: list[_Token] = []
    for t in tokens:
        _lead, core, _trail = _edges(t.shown)
        said = None if t.kept else sn.spoken_form(core)
        if not said:
            out.append(t)
            continue
        if capitals and (not out or out[-1].shown.endswith(_SENTENCE_END)):
            said[0] = said[0][:1].upper() + said[0][1:]
        out += _spread(t, said)
    return out


def _as_digits(tokens: list[_Token]) -> list[_Token]:
    """Numbers said as words become digits, one number each (module docstring)."""
    spoken = sn.read([("[TAG]" if t.kept else t.shown) for t in tokens])
    kinds, word_of = spoken.kinds, spoken.word_of
    numeral = [spoken.numeric[i] and kinds[i] in _NUMERAL_KINDS for i in range(len(kinds))]
    # Per word: the numbers that replace it, by its first sub-token; a word with any sub-token
    # not in a number is left as it is.
    numbers: dict[int, list[str]] = {}
    spans: dict[int, int] = {}  # first word of a number -> its last word
    i = 0
    while i < len(kinds):
        if not numeral[i]:
            i += 1
            continue
        first = i
        index = [i]
        j = i + 1
        while j < len(kinds):
            if numeral[j]:
                index.append(j)
            elif not (
                _plain(tokens[word_of[j]].shown) == "and"
                and kinds[j - 1] in _SCALE_KINDS
                and j + 1 < len(kinds)
                and numeral[j + 1]
            ):
                break
            j += 1
        _read_numbers(spoken, index, tokens, numbers, spans)
        i = j if j > first else first + 1
    if not numbers:
        return tokens
    out: list[_Token] = []
    w = 0
    while w < len(tokens):
        if w not in numbers:
            out.append(tokens[w])
            w += 1
            continue
        last = spans[w]
        texts = numbers[w]
        lead, _core, _trail = _edges(tokens[w].shown)
        _lead, _core, trail = _edges(tokens[last].shown)
        merged = _joined(tokens[w : last + 1], " ".join(texts), lead, trail)
        out += _spread(merged, texts) if len(texts) > 1 else [merged]
        w = last + 1
    return out


def _read_numbers(
    spoken: sn.Spoken,
    index: list[int],
    tokens: list[_Token],
    numbers: dict[int, list[str]],
    spans: dict[int, int],
) -> None:
    """The numbers of one stretch of number sub-tokens, `index`, into `numbers` and `spans`."""
    kinds, values, word_of = spoken.kinds, spoken.values, spoken.word_of
    k = 0
    while k < len(index):
        i = index[k]
        kind = kinds[i]
        if kind == sn.DIGITS:
            _lead, core, _trail = _edges(tokens[word_of[i]].shown)
            texts, used = [_THOUSANDS.sub("", core)], 1
        elif kind == sn.REPEAT and k + 1 < len(index) and kinds[index[k + 1]] in (sn.UNIT, sn.OH):
            texts, used = [values[index[k + 1]]] * int(values[i]), 2
        elif kind == sn.REPEAT:
            return
        else:
            value, used = sn.cardinal(kinds, values, index, k)
            texts = [str(value)]
        first_word, last_word = word_of[i], word_of[index[k + used - 1]]
        subs = [s for s in range(len(kinds)) if first_word <= word_of[s] <= last_word]
        if all(s in index or _plain(tokens[word_of[s]].shown) == "and" for s in subs):
            if spans.get(first_word) == last_word:  # a second number in the same words ("double four")
                numbers[first_word] += texts
            elif all(last_word < a or first_word > b for a, b in spans.items()):
                numbers[first_word] = texts
                spans[first_word] = last_word
        k += used


def _abbreviate(tokens: list[_Token]) -> None:
    for previous, t in itertools.pairwise(tokens):
        if t.kept:
            continue
        short = MEASUREMENTS.get(_plain(t.shown))
        if short is not None and _is_number(previous.shown):
            lead, _core, trail = _edges(t.shown)
            t.word, t.shown = short, lead + short + trail


def _is_number(shown: str) -> bool:
    word = _plain(shown)
    if any(ch.isdigit() for ch in word):
        return True
    spoken = sn.read([word])
    return bool(spoken.kinds) and spoken.kinds[-1] in (sn.UNIT, sn.TEEN, sn.TENS, sn.HUNDRED, sn.THOUSAND)


def _replaced(tokens: list[_Token], find: tuple[str, ...], replacement: tuple[str, ...]) -> list[_Token]:
    n = len(find)
    out: list[_Token] = []
    i = 0
    while i < len(tokens):
        window = tokens[i : i + n]
        if len(window) == n and all(
            not t.kept and _plain(t.shown) == f for t, f in zip(window, find, strict=True)
        ):
            if replacement:
                lead, _core, _trail = _edges(window[0].shown)
                _lead, _core, trail = _edges(window[-1].shown)
                merged = _joined(window, " ".join(replacement), lead, trail)
                out += _spread(merged, list(replacement))
            elif out and not out[-1].kept:  # removed: its sentence's end moves to the word before
                _lead, _core, trail = _edges(window[-1].shown)
                if trail.strip():
                    lead, core, _old = _edges(out[-1].shown)
                    out[-1].shown = lead + core + trail
            i += n
            continue
        out.append(tokens[i])
        i += 1
    return out


def _mask(tokens: list[_Token]) -> None:
    for t in tokens:
        if t.kept:
            continue
        lead, core, trail = _edges(t.shown)
        if core.lower() in PROFANITY:
            t.word = "*" * len(core)
            t.shown = lead + t.word + trail
