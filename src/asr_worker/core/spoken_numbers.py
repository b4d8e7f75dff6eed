"""Numbers as a transcript writes them, spoken or written, as digit strings: the first step of
redaction (`redact.py`), which must find a card number whether the engine wrote "4111 1111",
"4111-1111", "four one one one", "forty one eleven", "double four" or "oh four twenty six".

A transcript's words become sub-tokens (a hyphenated "twenty-three" is two), each of a kind:

* strong: a written number ("4111", "04/26", "$1,250": its digits), a digit word ("four",
  "niner"), a teen ("eleven"), a tens word ("forty");
* weak, numeric only next to a strong one: "oh" and "o" for zero; "double" and "triple" before
  a digit; "hundred" and "thousand" after a number; and the words an engine writes for a digit
  it misheard ("for", "to", "too", "ate", "won"), only among digits read one by one;
* bridges: fillers and corrections a caller says inside a number ("uh", "and", "dash",
  "sorry", "I mean"), kept inside a run, at most `MAX_BRIDGE` in a row;
* redaction tags a provider already wrote (`[CREDIT_CARD_1]`, `[REDACTED]`, `*`): opaque;
* any other word, with the redaction keywords marked (`CARD`, `EXPIRY`...).

A run is a stretch of numeric sub-tokens joined by bridges; its digits read cardinals the way
people say them in groups ("forty one eleven" is 4111, "nineteen eighty five" 1985, "five
hundred twelve" 512, "two thousand twenty six" 2026) and digits one by one otherwise ("four
one" is 41, never 5). Pure and compiled with the core (setup.py): it runs on every transcript
of a call that redacts, and only on the few that have a number or a keyword.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# Sub-token kinds.
WORD: Final = 0
DIGITS: Final = 1  # written digits: value is the digits
UNIT: Final = 2  # zero..nine: value one digit
OH: Final = 3  # "oh", "o": zero next to a number
HOMOPHONE: Final = 4  # "for", "to"...: a digit between two numbers
TEEN: Final = 5  # ten..nineteen: value two digits
TENS: Final = 6  # twenty..ninety: value the tens digit
HUNDRED: Final = 7
THOUSAND: Final = 8
REPEAT: Final = 9  # double, triple: value the count
BRIDGE: Final = 10  # a filler inside a number
TAG: Final = 11  # a provider's own redaction tag: value its kind (CARD, SSN...) or ""

# Keyword values of WORD sub-tokens: what a redaction keyword says of the numbers near it.
CARD: Final = "card"
EXPIRY: Final = "expiry"
CVV: Final = "cvv"
SSN: Final = "ssn"
SECURITY: Final = "security"  # "security code" is a CVV, "social security" an SSN
CODE: Final = "code"  # a CVV once a card is being talked about
MONTH: Final = "month"

MAX_BRIDGE: Final = 3  # fillers in a row a run spans ("four one, uh, sorry, four two")

_UNITS: Final = {
    "zero": "0",
    "nought": "0",
    "naught": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "niner": "9",
}
_OHS: Final = frozenset({"oh", "o"})
_HOMOPHONES: Final = {"for": "4", "fore": "4", "to": "2", "too": "2", "ate": "8", "won": "1"}
_TEENS: Final = {
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "thirteen": "13",
    "fourteen": "14",
    "fifteen": "15",
    "sixteen": "16",
    "seventeen": "17",
    "eighteen": "18",
    "nineteen": "19",
}
_TENS: Final = {
    "twenty": "2",
    "thirty": "3",
    "forty": "4",
    "fourty": "4",
    "fifty": "5",
    "sixty": "6",
    "seventy": "7",
    "eighty": "8",
    "ninety": "9",
}
_REPEATS: Final = {"double": "2", "triple": "3"}
_NUMBER_WORDS: Final = frozenset({*_UNITS, *_TEENS, *_TENS, "hundred", "thousand"})
_LONGEST_NUMBER_WORD: Final = max(len(word) for word in _NUMBER_WORDS)
_BRIDGES: Final = frozenset(
    {"uh", "um", "umm", "er", "erm", "ah", "hmm", "mm", "mhm", "and", "dash", "hyphen", "slash",
     "space", "sorry", "no", "wait", "actually", "i", "mean", "then", "oops"}
)  # fmt: skip
_KEYWORDS: Final = {
    "card": CARD,
    "cards": CARD,
    "credit": CARD,
    "debit": CARD,
    "visa": CARD,
    "mastercard": CARD,
    "amex": CARD,
    "maestro": CARD,
    "cardholder": CARD,
    "pan": CARD,
    "expiry": EXPIRY,
    "expiration": EXPIRY,
    "expires": EXPIRY,
    "expire": EXPIRY,
    "expiring": EXPIRY,
    "expired": EXPIRY,
    "exp": EXPIRY,
    "valid": EXPIRY,
    "thru": EXPIRY,
    "cvv": CVV,
    "cvv2": CVV,
    "cvc": CVV,
    "cvc2": CVV,
    "cv2": CVV,
    "csc": CVV,
    "cid": CVV,
    "verification": CVV,
    "security": SECURITY,
    "code": CODE,
    "codes": CODE,
    "social": SSN,
    "ssn": SSN,
    "january": MONTH,
    "february": MONTH,
    "march": MONTH,
    "april": MONTH,
    "may": MONTH,
    "june": MONTH,
    "july": MONTH,
    "august": MONTH,
    "september": MONTH,
    "october": MONTH,
    "november": MONTH,
    "december": MONTH,
    "jan": MONTH,
    "feb": MONTH,
    "mar": MONTH,
    "apr": MONTH,
    "jun": MONTH,
    "jul": MONTH,
    "aug": MONTH,
    "sep": MONTH,
    "sept": MONTH,
    "oct": MONTH,
    "nov": MONTH,
    "dec": MONTH,
}
# A tag a provider wrote for what it redacted: Deepgram's `[CREDIT_CARD_1]`, `[REDACTED]`,
# Flux's `*`. The kind it names counts as a keyword (a card was just read out).
_TAG: Final = re.compile(r"\W*\[([A-Za-z_]+?)(?:_\d+)?\]\W*|\*+")
_TAG_KINDS: Final = {
    "credit_card": CARD,
    "credit_card_expiration": EXPIRY,
    "cvv": CVV,
    "ssn": SSN,
}
_EDGE: Final = re.compile(r"^\W+|\W+$")
_NOT_DIGIT: Final = re.compile(r"\D+")
_DIGIT: Final = re.compile(r"\d")

# What `may_hold` looks for in a word: the keywords whole; a number word by its first letters,
# so that one that begins a longer word ("ElevenEleven", "fourteenth") is found too.
_KEYWORD_SET: Final = frozenset(_KEYWORDS)
_NUMBER_STARTS: Final = frozenset(word[:4] for word in _NUMBER_WORDS)
_TRIM: Final = ".,?!;:'\"()"


def may_hold(text: str) -> bool:
    """Whether `text` can hold anything redaction acts on: a digit, a number word, a keyword, a
    provider's tag. Most transcripts hold none, and are passed on after this one look (about a
    microsecond compiled, for every transcript of a call that redacts)."""
    for char in text:
        if "0" <= char <= "9" or char in "[*":
            return True
    for token in text.lower().split():
        word = token.strip(_TRIM)
        if word in _KEYWORD_SET or word[:4] in _NUMBER_STARTS:
            return True
        if "-" in word:
            for part in word.split("-"):
                if part in _KEYWORD_SET or part[:4] in _NUMBER_STARTS:
                    return True
    return False


@dataclass(slots=True)
class Spoken:
    """A transcript's words as sub-tokens, flat: kind, value, and the word each came from."""

    kinds: list[int]
    values: list[str]
    word_of: list[int]
    numeric: list[bool]  # kinds resolved in context: this sub-token is part of a number


@dataclass(frozen=True, slots=True)
class Run:
    """Numeric sub-tokens `first` to `last` (bridges between them included) and the digits
    they say. `cuts` are the places the run may be cut between whole numbers: (the last
    sub-token before the cut, how many digits come before it)."""

    first: int
    last: int
    digits: str
    cuts: tuple[tuple[int, int], ...]


def read(words: list[str]) -> Spoken:
    """Each word (as written, punctuation and case included) as sub-tokens, resolved."""
    kinds: list[int] = []
    values: list[str] = []
    word_of: list[int] = []
    for index, word in enumerate(words):
        _classify(word, index, kinds, values, word_of)
    return Spoken(kinds, values, word_of, _resolve(kinds, values))


def _classify(word: str, index: int, kinds: list[int], values: list[str], word_of: list[int]) -> None:
    tag = _TAG.fullmatch(word)
    if tag is not None:
        name = tag.group(1)
        kinds.append(TAG)
        values.append(_TAG_KINDS.get(name.lower(), "") if name is not None else "")
        word_of.append(index)
        return
    core = _EDGE.sub("", word.lower())
    if _DIGIT.search(core) is not None:
        kinds.append(DIGITS)
        values.append(_NOT_DIGIT.sub("", core))
        word_of.append(index)
        return
    parts = core.split("-") if "-" in core else [core]
    for part in parts:
        if not part:
            continue
        kind, value = _kind_of(part)
        glued = _unglued(part) if kind == WORD and not value and len(part) >= 6 else []
        if glued:  # "ElevenEleven": number words an engine wrote as one
            for piece in glued:
                piece_kind, piece_value = _kind_of(piece)
                kinds.append(piece_kind)
                values.append(piece_value)
                word_of.append(index)
            continue
        kinds.append(kind)
        values.append(value)
        word_of.append(index)


def _unglued(part: str) -> list[str]:
    """`part` as number words written together ("eleveneleven", "fourone"), or [] if it is not
    made of them alone."""
    pieces: list[str] = []
    at = 0
    while at < len(part):
        for size in range(min(_LONGEST_NUMBER_WORD, len(part) - at), 2, -1):
            if part[at : at + size] in _NUMBER_WORDS:
                pieces.append(part[at : at + size])
                at += size
                break
        else:
            return []
    return pieces if len(pieces) > 1 else []


def _kind_of(part: str) -> tuple[int, str]:
    unit = _UNITS.get(part)
    if unit is not None:
        return UNIT, unit
    if part in _OHS:
        return OH, "0"
    teen = _TEENS.get(part)
    if teen is not None:
        return TEEN, teen
    tens = _TENS.get(part)
    if tens is not None:
        return TENS, tens
    if part == "hundred":
        return HUNDRED, "00"
    if part == "thousand":
        return THOUSAND, "000"
    repeat = _REPEATS.get(part)
    if repeat is not None:
        return REPEAT, repeat
    homophone = _HOMOPHONES.get(part)
    if homophone is not None:
        return HOMOPHONE, homophone
    if part in _BRIDGES:
        return BRIDGE, ""
    return WORD, _KEYWORDS.get(part, "")


def _strong(kind: int) -> bool:
    return kind in (DIGITS, UNIT, TEEN, TENS)


def _resolve(kinds: list[int], values: list[str]) -> list[bool]:
    """Which sub-tokens are numbers here: the strong ones always, the weak ones by their
    neighbours (module docstring)."""
    n = len(kinds)
    numeric = [_strong(kind) for kind in kinds]
    # "double"/"triple" before a digit (or "oh"), and that "oh" with it.
    for i in range(n - 1):
        if kinds[i] == REPEAT and (
            kinds[i + 1] in (UNIT, OH) or (kinds[i + 1] == DIGITS and len(values[i + 1]) == 1)
        ):
            numeric[i] = numeric[i + 1] = True
    # "oh" next to a number, outwards through chains of them ("oh oh seven").
    changed = True
    while changed:
        changed = False
        for i in range(n):
            beside = (i > 0 and numeric[i - 1]) or (i + 1 < n and numeric[i + 1])
            if kinds[i] == OH and not numeric[i] and beside:
                numeric[i] = changed = True
    for i in range(n):
        kind = kinds[i]
        if kind in (HUNDRED, THOUSAND):
            numeric[i] = i > 0 and numeric[i - 1] and kinds[i - 1] != DIGITS
    # A misheard digit: inside digits read one by one ("four to one one", two on one side), or
    # before a group of them ("is for 1111"); never "from 9 to 5" or "3 for 2 dollars".
    for i in range(n):
        if kinds[i] == HOMOPHONE and (
            (
                _single(kinds, values, numeric, i - 1)
                and _single(kinds, values, numeric, i + 1)
                and (_single(kinds, values, numeric, i - 2) or _single(kinds, values, numeric, i + 2))
            )
            or _group(kinds, values, i + 1)
        ):
            numeric[i] = True
    return numeric


def _group(kinds: list[int], values: list[str], i: int) -> bool:
    """Sub-token `i` is a written group of digits, as card numbers are read ("1111")."""
    return 0 <= i < len(kinds) and kinds[i] == DIGITS and len(values[i]) >= 3


def _single(kinds: list[int], values: list[str], numeric: list[bool], i: int) -> bool:
    """Sub-token `i` is one digit said alone ("four", "oh", "4")."""
    if i < 0 or i >= len(kinds) or not numeric[i]:
        return False
    kind = kinds[i]
    return kind in (UNIT, OH) or (kind == DIGITS and len(values[i]) == 1)


def runs(spoken: Spoken) -> list[Run]:
    """The numbers in `spoken`, in order."""
    found: list[Run] = []
    numeric, kinds = spoken.numeric, spoken.kinds
    n = len(kinds)
    i = 0
    while i < n:
        if not numeric[i]:
            i += 1
            continue
        first = last = i
        j = i + 1
        bridged = 0
        while j < n:
            if numeric[j]:
                last, bridged = j, 0
            elif kinds[j] == BRIDGE and bridged < MAX_BRIDGE:
                bridged += 1
            else:
                break
            j += 1
        digits, cuts = _digits(spoken, first, last)
        found.append(Run(first, last, digits, cuts))
        i = last + 1
    return found


def _digits(spoken: Spoken, first: int, last: int) -> tuple[str, tuple[tuple[int, int], ...]]:
    """The digits of the run `first`..`last`, reading cardinals; the cuts between numbers."""
    kinds, values, numeric = spoken.kinds, spoken.values, spoken.numeric
    index = [i for i in range(first, last + 1) if numeric[i]]
    out: list[str] = []
    cuts: list[tuple[int, int]] = []
    size = 0
    k = 0
    while k < len(index):
        i = index[k]
        kind = kinds[i]
        if kind == REPEAT:
            # numeric only before a digit, which is then in the run too
            text = values[index[k + 1]] * int(values[i]) if k + 1 < len(index) else ""
            used = 2 if k + 1 < len(index) else 1
        elif kind in (DIGITS, HUNDRED, THOUSAND):
            text, used = values[i], 1
        else:
            value, used = _cardinal(kinds, values, index, k)
            text = str(value) if used > 1 else _alone(kind, values[i])
        out.append(text)
        size += len(text)
        k += used
        cuts.append((index[k - 1], size))
    return "".join(out), tuple(cuts)


def _alone(kind: int, value: str) -> str:
    """A number word's digits when it is a number of its own."""
    return value + "0" if kind == TENS else value


def _small(kinds: list[int], values: list[str], index: list[int], k: int) -> tuple[int, int]:
    """A number below 100 said at index[k]: "forty one", "eleven", "seven". (value, words)."""
    if k >= len(index):
        return -1, 0
    i = index[k]
    kind = kinds[i]
    if kind == TENS:
        if k + 1 < len(index) and kinds[index[k + 1]] == UNIT and values[index[k + 1]] != "0":
            return int(values[i]) * 10 + int(values[index[k + 1]]), 2
        return int(values[i]) * 10, 1
    if kind in (TEEN, UNIT, OH, HOMOPHONE):
        return int(values[i]), 1
    return -1, 0


def _below_thousand(kinds: list[int], values: list[str], index: list[int], k: int) -> tuple[int, int]:
    """ "five hundred twelve", "nineteen hundred", or a number below 100: (value, words)."""
    value, used = _small(kinds, values, index, k)
    if used and k + used < len(index) and kinds[index[k + used]] == HUNDRED:
        value *= 100
        used += 1
        rest, more = _small(kinds, values, index, k + used)
        value += max(0, rest)
        used += more
    return value, used


def cardinal(kinds: list[int], values: list[str], index: list[int], k: int) -> tuple[int, int]:
    """The number said from sub-token index[k] of `read`'s kinds and values, read as people
    say one ("forty one" 41, "five hundred twelve" 512, "four" 4): (value, sub-tokens used).
    For formatting numbers as digits (`formatting.py`), where digits said one by one stay
    one number each."""
    return _cardinal(kinds, values, index, k)


def _cardinal(kinds: list[int], values: list[str], index: list[int], k: int) -> tuple[int, int]:
    """The cardinal said from index[k]: (value, sub-tokens used); one sub-token if it is a
    digit or a number on its own."""
    value, used = _below_thousand(kinds, values, index, k)
    if used == 0:
        return 0, 1
    if k + used < len(index) and kinds[index[k + used]] == THOUSAND:
        value *= 1000
        used += 1
        rest, more = _below_thousand(kinds, values, index, k + used)
        if more:
            value += rest
            used += more
    return value, used


# --- numbers written as words (the other way) -------------------------------------------------

_ONES: Final = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)  # fmt: skip
_TENS_WORDS: Final = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES: Final = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINALS: Final = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
_CURRENCIES: Final = {"$": ("dollar", "cents"), "£": ("pound", "pence"), "€": ("euro", "cents")}
_AMOUNT: Final = re.compile(r"([$£€])?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(%)?")
_ORDINAL: Final = re.compile(r"(\d+)(?:st|nd|rd|th)", re.IGNORECASE)
_CLOCK: Final = re.compile(r"(\d{1,2}):(\d{2})")
_PIECES: Final = re.compile(r"\d+|[^\W\d_]+")
MAX_CARDINAL_DIGITS: Final = 4  # longer digit strings without separators are codes, read one by one


def number_words(n: int) -> list[str]:
    """A whole number as people say it: 1250 is one thousand two hundred fifty."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        tens, unit = divmod(n, 10)
        return [_TENS_WORDS[tens], _ONES[unit]] if unit else [_TENS_WORDS[tens]]
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return [_ONES[hundreds], "hundred", *(number_words(rest) if rest else [])]
    for scale, name in _SCALES:
        if n >= scale:
            high, rest = divmod(n, scale)
            return [*number_words(high), name, *(number_words(rest) if rest else [])]
    return digit_words(str(n))


def digit_words(digits: str) -> list[str]:
    """Digits one by one: 0426 is zero four two six."""
    return [_ONES[int(d)] for d in digits if "0" <= d <= "9"]


def _group_words(digits: str) -> list[str]:
    """A group of digits written alone: a number people say as one, unless it is a code (a
    leading zero, or more than MAX_CARDINAL_DIGITS digits), said digit by digit."""
    if (len(digits) > 1 and digits[0] == "0") or len(digits) > MAX_CARDINAL_DIGITS:
        return digit_words(digits)
    return number_words(int(digits))


def ordinal_words(n: int) -> list[str]:
    words = number_words(n)
    last = words[-1]
    if last in _ORDINALS:
        words[-1] = _ORDINALS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return words


def spoken_form(written: str) -> list[str] | None:
    """How a written number is said, word by word ("$3.50" three dollars fifty cents, "21st"
    twenty first, "3:05" three oh five, "50%" fifty percent, "0426" zero four two six); the
    letters of a mixed token are kept ("covid-19" covid nineteen). None if it has no digit.
    `written` has no surrounding punctuation."""
    if _DIGIT.search(written) is None:
        return None
    amount = _AMOUNT.fullmatch(written)
    if amount is not None:
        currency, whole, decimals, percent = amount.groups()
        grouped = "," in whole
        digits = whole.replace(",", "")
        words = number_words(int(digits)) if grouped or currency else _group_words(digits)
        if currency:
            unit, cents = _CURRENCIES[currency]
            words.append(unit if int(digits) == 1 else unit + "s")
            if decimals and len(decimals) == 2 and int(decimals):
                words += [*number_words(int(decimals)), cents]
        elif decimals:
            words += ["point", *digit_words(decimals)]
        if percent:
            words.append("percent")
        return words
    ordinal = _ORDINAL.fullmatch(written)
    if ordinal is not None:
        return ordinal_words(int(ordinal.group(1)))
    clock = _CLOCK.fullmatch(written)
    if clock is not None:
        hour, minutes = int(clock.group(1)), int(clock.group(2))
        if minutes == 0:
            return [*number_words(hour), "o'clock"]
        return [*number_words(hour), *(["oh", _ONES[minutes]] if minutes < 10 else number_words(minutes))]
    words = []
    for piece in _PIECES.findall(written):
        words += _group_words(piece) if piece[0].isdigit() else [piece]
    return words
