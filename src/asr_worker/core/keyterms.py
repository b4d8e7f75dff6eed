"""A call's keyterms: the words it is expected to use (product, agent and place names,
account codes), which every provider is given for that call.

They arrive in several shapes (a query's repeated `keyterm` and `keywords`, a platform's
comma-separated custom parameter, a JSON list) and are held to one set of limits with one
wording of the error, whichever route brought them: at most `MAX_KEYTERMS` distinct terms of
at most `MAX_KEYTERM_CHARS` characters each (Deepgram's limits for Nova-3 `keyterm`),
whitespace runs made one space, empty ones skipped, each kept once in order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from ..errors import ParamError

MAX_KEYTERMS: Final = 100
MAX_KEYTERM_CHARS: Final = 100

_BOOSTED: Final = re.compile(r".+:-?[0-9]+(\.[0-9]+)?")


def without_boost(keyword: str) -> str:
    """A `keywords` value (`word` or Deepgram's older `word:boost`) as a term: the boost is
    Deepgram's own and dropped."""
    return keyword.rsplit(":", 1)[0] if _BOOSTED.fullmatch(keyword.strip()) else keyword


def check_keyterms(values: Iterable[str], name: str) -> tuple[str, ...]:
    """Terms given as a list; a ParamError names `name`, the field the terms came in, with
    the term's index: `keyterms[3] must be at most 100 characters`."""
    named = [(f"{name}[{index}]", value) for index, value in enumerate(values)]
    return distinct_terms(named, f"{name}: at most {MAX_KEYTERMS} terms")


def distinct_terms(named: Iterable[tuple[str, str]], too_many: str) -> tuple[str, ...]:
    """The terms of (where, text) pairs in order, whitespace runs one space, empty ones
    skipped, each once; ParamError for a term over MAX_KEYTERM_CHARS (naming its `where`) or
    for more than MAX_KEYTERMS (saying `too_many`)."""
    terms: list[str] = []
    for where, text in named:
        term = " ".join(text.split())
        if not term:
            continue
        if len(term) > MAX_KEYTERM_CHARS:
            raise ParamError(f"{where} must be at most {MAX_KEYTERM_CHARS} characters")
        terms.append(term)
    unique = tuple(dict.fromkeys(terms))
    if len(unique) > MAX_KEYTERMS:
        raise ParamError(too_many)
    return unique
