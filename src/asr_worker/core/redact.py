"""Redaction: a call's card numbers, their expiry dates and security codes, US social security
numbers and (with `numbers`) any number of three digits or more, taken out of every transcript
before anyone sees it.

One `Redactor` per call, owned by the session core, which passes every transcript through it
before emitting it: so whichever provider heard the words (after a failover, a reconnect's
replay, or a resumed call), every watcher (the call's sockets, SSE, the page, the bus,
AudioHook's entities, OpenAI's deltas) gets the same redacted text, and nothing after the core
holds a redacted digit. dg-server keeps one per connection. Pure and
clockless: text and word times in, text and words out; compiled with the core (setup.py).

What it redacts, by the call's `redact` values (Deepgram's, `CallOptions.redact`):

* `pci`: card numbers (a run of 12 digits or more: a full number, Luhn-valid or not, for a
  misheard digit must not let the rest of a card through; Luhn says where a valid number ends
  when the expiry date or code follows it in one breath), and every number said while a card
  is being talked about (a card keyword, or a card redacted, on either channel, within the
  last `CONTEXT_S` of call time): the expiry date (a month name with it), the security code,
  a group of digits a correction repeats, the agent reading the number back;
* `ssn`: nine-digit runs, and every number said while a social security number is talked about;
* `numbers` (and `true`, Deepgram's default set): all of that, and every run of three digits
  or more; `aggressive_numbers`: every number.

Numbers are read as people say them (`spoken_numbers`): digit by digit, in groups, "double
four", "oh" for zero, with fillers and corrections between. A number cut by the end of a final
goes on in the next final of its channel (`JOIN_GAP_S`): a final that ends in three digits or
more is redacted at once, as the start of what may be a card, and its continuation is the same
entity. An interim is redacted before it is settled: every number it ends with, every number
in a card's context and every number of three digits or more is masked there.

The replacement is Deepgram's streaming form, so a client written for Deepgram needs no
change: in a final, the entity's kind and its number in the call (`[CREDIT_CARD_1]`,
`[CREDIT_CARD_EXPIRATION_1]`, `[CVV_1]`, `[SSN_1]`; the same number read again is the same
entity); `[REDACTED]` for what only the digit rule caught and in interims. The words of a span
become one word, from the first one's start to the last one's end, so the transcript's text is
its words joined, one word each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from ..settings import Section, Setting
from . import spoken_numbers as sn
from .call_options import REDACT_VALUES, parse_redact
from .events import TranscriptWord
from .provider_events import TranscriptResult, Word

CONTEXT_S: Final = (
    30.0  # a card (or SSN) keyword, or a redacted card, makes numbers this long after it sensitive
)
JOIN_GAP_S: Final = 6.0  # a number at the start of a final goes on one its channel's last final ended with
PARTIAL_DIGITS: Final = 3  # a final ending in this many digits may be the start of a card: redacted
CARD_DIGITS: Final = 12  # a run this long is a card number (13-19 digits, and misheard ones)
SSN_DIGITS: Final = 9
KEYWORD_REACH: Final = 10  # a keyword names the kind of a number this many words after it at most
MAX_ENTITIES: Final = 256  # distinct entities a call remembers by their digits' hash, for their numbers

CREDIT_CARD: Final = "CREDIT_CARD"
CREDIT_CARD_EXPIRATION: Final = "CREDIT_CARD_EXPIRATION"
CVV: Final = "CVV"
SSN: Final = "SSN"
REDACTED: Final = "[REDACTED]"
_TRAILING: Final = ".,?!;:"
_NEVER: Final = float("-inf")


@dataclass(frozen=True, slots=True)
class RedactOptions:
    """The redaction every call gets, whatever it asks: ASR_REDACT. A call's own `redact`
    values add to it."""

    redact: tuple[str, ...] = ()


def _redact_values(text: str) -> tuple[str, ...]:
    try:
        return tuple(sorted(parse_redact([text], "ASR_REDACT")))
    except ValueError as exc:
        raise ValueError(f"must be comma-separated values from {', '.join(REDACT_VALUES)}") from exc


SETTINGS: Final = Section(
    "redaction",
    "redaction",
    RedactOptions,
    (
        Setting(
            "redact",
            "ASR_REDACT",
            "redact every call's transcripts of these, Deepgram's values comma-separated: pci (cards, "
            "expiry dates, security codes), ssn, numbers (any 3+ digits; also true); a call's own redact "
            "adds to it",
            _redact_values,
        ),
    ),
)


@dataclass(slots=True)
class _Open:
    """A number a channel's last final ended with: the next final may go on with it."""

    end_s: float
    digits: int
    label: str  # "" if it was not redacted
    replacement: str


@dataclass(slots=True)
class Span:
    """Words `first` to `last` of a result are replaced by one word, `text`."""

    first: int
    last: int
    text: str


@dataclass(slots=True)
class Redactor:
    cards: bool  # pci
    ssn: bool
    min_digits: int  # any run this long (numbers: 3, aggressive_numbers: 1); 0: no such rule
    spans_redacted: int = 0  # spans replaced in finals, for the metrics
    _card_until_s: float = _NEVER
    _card_kind: str = CREDIT_CARD
    _ssn_until_s: float = _NEVER
    _open: dict[int, _Open] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)
    _entities: dict[tuple[str, int], str] = field(default_factory=dict)

    @classmethod
    def of(cls, values: frozenset[str]) -> Redactor | None:
        """The redactor for a call's `redact` values; None when it asks for none."""
        if not values:
            return None
        numbers = bool(values & {"numbers", "true", "aggressive_numbers"})
        return cls(
            cards=numbers or "pci" in values,
            ssn=numbers or "ssn" in values,
            min_digits=1 if "aggressive_numbers" in values else 3 if numbers else 0,
        )

    # --- the two shapes of a transcript ---------------------------------------------------

    def event_words(
        self,
        channel: int,
        is_final: bool,
        text: str,
        words: tuple[TranscriptWord, ...],
        start_s: float,
        end_s: float,
    ) -> tuple[str, tuple[TranscriptWord, ...]]:
        """A transcript event's text and words (call seconds), redacted. With words, the text
        is made from them; without (a provider that gives none), from the text's own words."""
        if not sn.may_hold(text):
            if is_final:
                self._said(channel, start_s)
            return text, words
        if not words:
            tokens = text.split()
            spans = self.spans(channel, is_final, tokens, [start_s] * len(tokens), [end_s] * len(tokens))
            return (_join(tokens, spans), words) if spans else (text, words)
        shown = [w.punctuated_word or w.word for w in words]
        spans = self.spans(channel, is_final, shown, [w.start for w in words], [w.end for w in words])
        if not spans:
            return text, words
        out: list[TranscriptWord] = []
        at = 0
        for span in spans:
            out.extend(words[at : span.first])
            first, last = words[span.first], words[span.last]
            punctuated = span.text + _trailing(shown[span.last])
            confidence = min(w.confidence for w in words[span.first : span.last + 1])
            out.append(
                TranscriptWord(span.text, first.start, last.end, confidence, punctuated, first.speaker)
            )
            at = span.last + 1
        out.extend(words[at:])
        return " ".join(w.punctuated_word or w.word for w in out), tuple(out)

    def result(self, result: TranscriptResult) -> TranscriptResult:
        """A provider's result (its stream's times), redacted: dg-server's `Results`."""
        text, words = result.text, result.words
        if not sn.may_hold(text):
            if result.is_final:
                self._said(result.channel, result.start)
            return result
        if words:
            shown = [w.punctuated_word or w.word for w in words]
            spans = self.spans(
                result.channel, result.is_final, shown, [w.start for w in words], [w.end for w in words]
            )
            if not spans:
                return result
            out: list[Word] = []
            at = 0
            for span in spans:
                out.extend(words[at : span.first])
                first, last = words[span.first], words[span.last]
                confidence = min(w.confidence for w in words[span.first : span.last + 1])
                punctuated = span.text + _trailing(shown[span.last])
                out.append(Word(span.text, first.start, last.end, confidence, punctuated, first.speaker))
                at = span.last + 1
            out.extend(words[at:])
            new_words = tuple(out)
            new_text = " ".join(w.punctuated_word or w.word for w in new_words)
        else:
            tokens = text.split()
            times_start = [result.start] * len(tokens)
            times_end = [result.end] * len(tokens)
            spans = self.spans(result.channel, result.is_final, tokens, times_start, times_end)
            if not spans:
                return result
            new_words, new_text = words, _join(tokens, spans)
        # Search hits and entities are not carried over: they quote the words just redacted.
        return TranscriptResult(
            channel=result.channel,
            is_final=result.is_final,
            speech_final=result.speech_final,
            text=new_text,
            confidence=result.confidence,
            start=result.start,
            duration=result.duration,
            words=new_words,
            from_finalize=result.from_finalize,
            channels=result.channels,
            language=result.language,
            languages=result.languages,
        )

    # --- the policy -----------------------------------------------------------------------

    def spans(
        self, channel: int, is_final: bool, words: list[str], starts: list[float], ends: list[float]
    ) -> list[Span]:
        """What to replace in one result's words (as written; their times): the policy of the
        module's docstring. Finals move the call's state (numbering, a number left open at the
        end, context); interims only read it, except that their keywords open a context."""
        spoken = sn.read(words)
        kinds, values, word_of = spoken.kinds, spoken.values, spoken.word_of
        card_kind = self._card_kind  # what the card's context was asking for before this result
        keyword_at = self._keywords(spoken, ends, is_final)
        found = sn.runs(spoken)
        if is_final and words:
            self._said(channel, starts[0], keep=bool(found))
        if not found:
            return []
        opened = self._open.get(channel)
        spans: list[Span] = []
        last_run = found[-1]
        ends_open = not _any_word_between(kinds, last_run.last + 1, len(kinds))
        for run in found:
            first_word, last_word = word_of[run.first], word_of[run.last]
            start_s, end_s = starts[first_word], ends[last_word]
            trailing = run is last_run and ends_open
            joined = (
                opened is not None
                and not _any_word_between(kinds, 0, run.first)
                and start_s - opened.end_s <= JOIN_GAP_S
            )
            total = len(run.digits) + (opened.digits if joined and opened is not None else 0)
            kind = _nearest_kind(keyword_at, run.first)
            label = self._label(run.digits, total, start_s, kind, card_kind, joined, opened, trailing)
            if not is_final:
                partial = (self.cards or self.ssn) and total >= PARTIAL_DIGITS
                if label or trailing or joined or partial:
                    spans.append(Span(first_word, last_word, REDACTED))
                continue
            if not label:
                if trailing:
                    self._open[channel] = _Open(end_s, total, "", "")
                continue
            if joined and opened is not None and opened.label == label:
                text = opened.replacement
                pieces = [(run.first, run.last, label)]
            else:
                text = self._name(label, run.digits)
                pieces = self._pieces(run, label)
            for piece_first, piece_last, piece_label in pieces:
                piece_text = text if piece_label == label else self._name(piece_label, run.digits)
                first_word, last_word = word_of[piece_first], word_of[piece_last]
                if piece_label == CREDIT_CARD_EXPIRATION:
                    first_word, last_word = _with_month(values, kinds, word_of, piece_first, piece_last)
                spans.append(Span(first_word, last_word, piece_text))
            if label in (CREDIT_CARD, CREDIT_CARD_EXPIRATION, CVV):
                self._card_until_s = max(self._card_until_s, end_s + CONTEXT_S)
            elif label == SSN:
                self._ssn_until_s = max(self._ssn_until_s, end_s + CONTEXT_S)
            if trailing:
                self._open[channel] = _Open(end_s, total, label, text)
        if is_final:
            if not ends_open:
                self._open.pop(channel, None)
            self.spans_redacted += len(spans)
        return _merged(spans, len(words))

    def _said(self, channel: int, start_s: float, *, keep: bool = False) -> None:
        """A final on `channel` from `start_s`: a number another channel left open before it
        does not go on past it (the agent spoke between two groups: the next group is its
        own), and this channel's own goes on only into this final's first number (`keep`)."""
        for other in [c for c, opened in self._open.items() if c != channel and opened.end_s <= start_s]:
            del self._open[other]
        if not keep:
            self._open.pop(channel, None)

    def _label(
        self,
        digits: str,
        total: int,
        start_s: float,
        kind: str,
        card_kind: str,
        joined: bool,
        opened: _Open | None,
        trailing: bool,
    ) -> str:
        """What a number is: an entity's label, REDACTED for the digit rules, "" for nothing."""
        card_context = self.cards and (start_s <= self._card_until_s or kind in (sn.CARD, sn.EXPIRY, sn.CVV))
        ssn_context = self.ssn and (start_s <= self._ssn_until_s or kind == sn.SSN)
        continues = joined and opened is not None and opened.label not in ("", REDACTED)
        if continues and opened is not None and total <= _MOST_DIGITS.get(opened.label, total):
            # the rest of the same entity (past the digits it can have, the start of a longer one)
            return opened.label
        if self.cards and total >= CARD_DIGITS:
            return CREDIT_CARD
        if kind == sn.SSN and ssn_context:
            return SSN
        if card_context:
            if kind == "" and total < PARTIAL_DIGITS:
                return REDACTED  # a small number said near a card: hidden, but not named one
            if kind == "" and card_kind == CREDIT_CARD:
                # no word says what it is (or the engine misheard it): its digits may
                card_kind = CREDIT_CARD_EXPIRATION if total == 4 and _expiry_like(digits) else card_kind
                card_kind = CVV if total == 3 else card_kind
            if kind == sn.EXPIRY or (kind == "" and card_kind == CREDIT_CARD_EXPIRATION):
                return CREDIT_CARD_EXPIRATION
            if kind == sn.CVV or (kind == "" and card_kind == CVV):
                return CVV
            return CREDIT_CARD
        if ssn_context and kind == "" and total < PARTIAL_DIGITS:
            return REDACTED
        if ssn_context or (self.ssn and total == SSN_DIGITS):
            return SSN
        if self.min_digits and total >= self.min_digits:
            return REDACTED
        if (joined and opened is not None and opened.label) or (
            trailing and (self.cards or self.ssn) and total >= PARTIAL_DIGITS
        ):
            return REDACTED  # may be the start (or the rest) of a card: said before it is known
        return ""

    def _keywords(self, spoken: sn.Spoken, ends: list[float], is_final: bool) -> list[tuple[int, str]]:
        """The result's redaction keywords, (sub-token, kind) in order; each opens its context
        from the end of its word (an interim's too), and a final's say what the card's context
        asks for next (the expiry date, the code)."""
        kinds, values, word_of = spoken.kinds, spoken.values, spoken.word_of
        found: list[tuple[int, str]] = []
        n = len(kinds)
        for i in range(n):
            kind = kinds[i]
            if kind not in (sn.WORD, sn.TAG):
                continue
            value = values[i]
            if value == sn.SECURITY:
                following = values[i + 1] if i + 1 < n else ""
                value = sn.CVV if following == sn.CODE else ""
            elif value == sn.CODE:
                value = sn.CVV if ends[word_of[i]] <= self._card_until_s or _seen(found, sn.CARD) else ""
            elif value == sn.MONTH:
                value = ""
            if not value:
                continue
            at_s = ends[word_of[i]]
            if value == sn.SSN:
                if self.ssn:
                    self._ssn_until_s = max(self._ssn_until_s, at_s + CONTEXT_S)
            elif self.cards:
                self._card_until_s = max(self._card_until_s, at_s + CONTEXT_S)
                if is_final:
                    self._card_kind = _LABELS[value]
            found.append((i, value))
        return found

    def _name(self, label: str, digits: str) -> str:
        """`[LABEL_N]`: the entity's number in the call, the same for the same digits."""
        if label == REDACTED:
            return REDACTED
        key = (label, hash(digits))
        known = self._entities.get(key)
        if known is not None:
            return known
        count = self._counts.get(label, 0) + 1
        self._counts[label] = count
        name = f"[{label}_{count}]"
        if len(self._entities) < MAX_ENTITIES:
            self._entities[key] = name
        return name

    def _pieces(self, run: sn.Run, label: str) -> list[tuple[int, int, str]]:
        """A card run, cut where a Luhn-valid number ends when more digits follow it in one
        breath (the expiry date, the code); any other run whole. Cuts fall between numbers
        (`Run.cuts`): the pieces are sub-tokens."""
        whole = [(run.first, run.last, label)]
        digits = run.digits
        if label != CREDIT_CARD or len(digits) < 16:
            return whole
        for length in (16, 15, 13, 19, 14, 17, 18):
            rest = len(digits) - length
            if rest < 3 or rest > 8 or not luhn_valid(digits[:length]):
                continue
            cut = _cut_at(run.cuts, length)
            if cut < 0:
                continue
            pieces = [(run.first, cut, CREDIT_CARD)]
            if rest == 3:
                pieces.append((cut + 1, run.last, CVV))
            elif rest == 4:
                expiry = digits[length : length + 2] in _MONTHS
                pieces.append((cut + 1, run.last, CREDIT_CARD_EXPIRATION if expiry else CVV))
            else:
                cut_expiry = _cut_at(run.cuts, length + 4)
                if cut_expiry >= 0 and rest in (7, 8):
                    pieces.append((cut + 1, cut_expiry, CREDIT_CARD_EXPIRATION))
                    pieces.append((cut_expiry + 1, run.last, CVV))
                else:
                    pieces.append((cut + 1, run.last, CREDIT_CARD_EXPIRATION))
            return pieces
        return whole


_LABELS: Final = {
    sn.CARD: CREDIT_CARD,
    sn.EXPIRY: CREDIT_CARD_EXPIRATION,
    sn.CVV: CVV,
}
_MONTHS: Final = frozenset(f"{m:02d}" for m in range(1, 13))
# The most digits an entity has: a number that goes on past them is another kind.
_MOST_DIGITS: Final = {SSN: SSN_DIGITS, CVV: 4, CREDIT_CARD_EXPIRATION: 6}


def _expiry_like(digits: str) -> bool:
    """MMYY of a card that is valid now or soon: a month, then a year from 2020 to 2045."""
    return len(digits) == 4 and digits[:2] in _MONTHS and "20" <= digits[2:] <= "45"


def luhn_valid(digits: str) -> bool:
    """The card number check digit (ISO/IEC 7812): a misheard digit fails it."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if position % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0 and len(digits) > 1


def _seen(found: list[tuple[int, str]], kind: str) -> bool:
    return any(value == kind for _, value in found)


def _nearest_kind(keyword_at: list[tuple[int, str]], sub: int) -> str:
    """The kind of the last keyword at most `KEYWORD_REACH` sub-tokens before sub-token
    `sub` in the same result, or ""."""
    kind = ""
    for at, value in keyword_at:
        if at >= sub:
            break
        kind = value if sub - at <= KEYWORD_REACH else ""
    return kind


def _any_word_between(kinds: list[int], start: int, stop: int) -> bool:
    """Whether sub-tokens `start` to `stop` hold a word that is no part of a number (a filler,
    a "double" whose digit is still to come, is not)."""
    return any(kinds[i] in (sn.WORD, sn.TAG) for i in range(start, stop))


def _cut_at(cuts: tuple[tuple[int, int], ...], digits: int) -> int:
    """The sub-token after which exactly `digits` digits were said, or -1."""
    for sub, size in cuts:
        if size == digits:
            return sub
        if size > digits:
            return -1
    return -1


def _with_month(
    values: list[str], kinds: list[int], word_of: list[int], first: int, last: int
) -> tuple[int, int]:
    """An expiry date's words, with the month name said just before or after its digits."""
    first_word, last_word = word_of[first], word_of[last]
    if first > 0 and kinds[first - 1] == sn.WORD and values[first - 1] == sn.MONTH:
        first_word = word_of[first - 1]
    if last + 1 < len(kinds) and kinds[last + 1] == sn.WORD and values[last + 1] == sn.MONTH:
        last_word = word_of[last + 1]
    return first_word, last_word


def _merged(spans: list[Span], n_words: int) -> list[Span]:
    """Spans in order, none overlapping (two pieces of one word become one)."""
    out: list[Span] = []
    for span in spans:
        if span.first >= n_words:
            continue
        if out and span.first <= out[-1].last:
            out[-1].last = max(out[-1].last, span.last)
            continue
        out.append(span)
    return out


def _trailing(word: str) -> str:
    """The punctuation a word ends with, kept after its replacement."""
    end = len(word)
    while end > 0 and word[end - 1] in _TRAILING:
        end -= 1
    return word[end:]


def _join(tokens: list[str], spans: list[Span]) -> str:
    out: list[str] = []
    at = 0
    for span in spans:
        out.extend(tokens[at : span.first])
        out.append(span.text + _trailing(tokens[span.last]))
        at = span.last + 1
    out.extend(tokens[at:])
    return " ".join(out)
