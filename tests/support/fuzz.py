"""What the fuzz tests share: how many examples to run, hostile values, and structure-aware
mutations of valid messages (drop a field, change its type, make it huge, negative, not a
number, not base64, unicode), so the parsers see near-valid input and not only random text.

Every parser must return a typed result or raise its own documented error, and that error's
message must stay short: `bounded` checks it.
"""

from __future__ import annotations

import copy
import json
import os
import re
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

# HYPOTHESIS_PROFILE=hunt (see tests/conftest.py) multiplies every fuzz test's examples;
# FUZZ_SCALE overrides the factor.
SCALE = int(os.environ.get("FUZZ_SCALE", "50" if settings.get_current_profile_name() == "hunt" else "1"))

# An error message names the problem and quotes at most a short excerpt of the input.
MAX_MESSAGE_CHARS = 300

HUGE_TEXT = "x" * 100_000


def examples(n: int, **kwargs: Any) -> settings:
    """Settings for a fuzz test: `n` examples in the repeatable profile, SCALE x n when hunting."""
    return settings(max_examples=max(1, n * SCALE), **kwargs)


def bounded(message: str, limit: int = MAX_MESSAGE_CHARS) -> None:
    """An error message is short: it never echoes a huge input back. An escape sequence
    (`\\U0001f600`, `\\x1f`) in a quoted excerpt counts as the one character it stands for, so
    an excerpt of N characters counts N however exotic they are (and at most 10 x N)."""
    assert message, "an error must say what was wrong"
    shown = _ESCAPE.sub("?", message)
    assert len(shown) <= limit, f"error message of {len(shown)} chars: {message[:200]}..."
    assert len(message) <= 10 * limit


_ESCAPE = re.compile(r"\\(U[0-9a-f]{8}|u[0-9a-f]{4}|x[0-9a-f]{2}|[nrt\\'])")


# --- values ---------------------------------------------------------------------------------------

TRICKY_STRINGS = st.sampled_from(
    [
        "",
        " ",
        "-1",
        "0",
        "00",
        "+5",
        "1.5",
        "1e999",
        "-0",
        "NaN",
        "inf",
        "²",  # isdigit() but not int()-able
        "٣",  # an Arabic-Indic digit
        "８０００",  # full-width digits
        "1_000",
        "0x10",
        "9" * 30,
        "9" * 5000,  # past int()'s 4300-digit limit
        "\x00",
        "\ud800",  # a lone surrogate: cannot be encoded as UTF-8
        "a\udfffb",
        "\u202e",  # right-to-left override
        "é",
        "!!!",
        "====",
        "QUJ",  # base64 of the wrong length
        "QUJD",
        "AAA=",
        "A" * 7,
        "true",
        "True",
        "null",
        "{}",
        "[]",
        HUGE_TEXT,
    ]
)


def _encodable(text: str) -> bool:
    return not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


# What a test client can put in a header or a query (lone surrogates cannot be sent as text).
SENDABLE_STRINGS = TRICKY_STRINGS.filter(_encodable)

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([-1, 0, 1, 2, 2**31, 2**63, -(2**63), 10**30, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 5e-324, 1e15]),
    st.text(max_size=30),
    TRICKY_STRINGS,
)


def json_values(max_leaves: int = 12) -> st.SearchStrategy[object]:
    """Any JSON value (NaN, Infinity and huge numbers included: Python's json accepts them)."""
    return st.recursive(
        SCALARS,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


DEEP = st.sampled_from([[[[[[[[[[[[[[[]]]]]]]]]]]]]], {"a": {"b": {"c": {"d": {"e": {}}}}}}])
HOSTILE = st.one_of(SCALARS, json_values(6), DEEP)


def dumps(value: object) -> str:
    """JSON as a careless or hostile peer may write it: NaN/Infinity allowed, unicode raw."""
    return json.dumps(value, allow_nan=True, ensure_ascii=False)


# --- structure-aware mutations ------------------------------------------------------------------

Path = tuple[str | int, ...]


def paths(value: object, prefix: Path = ()) -> list[Path]:
    """Every path to a field or item in a JSON value (the root excluded)."""
    out: list[Path] = []
    if isinstance(value, dict):
        for key, child in value.items():
            out.append((*prefix, key))
            out.extend(paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out.append((*prefix, index))
            out.extend(paths(child, (*prefix, index)))
    return out


def _parent(root: object, path: Path) -> Any:
    node: Any = root
    for key in path[:-1]:
        node = node[key]
    return node


@st.composite
def mutated(draw: st.DrawFn, valid: dict[str, object], max_mutations: int = 3) -> object:
    """A valid message with a few of its fields dropped, replaced by hostile values of any type,
    or joined by unknown fields; sometimes the whole body replaced by something else."""
    body: Any = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, max_mutations))):
        if not isinstance(body, dict | list):
            break
        where = paths(body)
        action = draw(st.sampled_from(["drop", "replace", "replace", "add", "retype", "root"]))
        if action == "root" or not where:
            body = _fresh(draw(HOSTILE))
            continue
        path = draw(st.sampled_from(where))
        parent = _parent(body, path)
        key = path[-1]
        if action == "drop":
            del parent[key]
        elif action == "replace":
            parent[key] = _fresh(draw(HOSTILE))
        elif action == "retype":
            parent[key] = _retyped(parent[key])
        elif action == "add" and isinstance(parent[key], dict):
            parent[key][draw(st.text(max_size=10))] = _fresh(draw(HOSTILE))
    return body


def _fresh(value: object) -> object:
    """A private copy: sampled values are shared objects, and mutations must not change them."""
    return copy.deepcopy(value)


def _retyped(value: object) -> object:
    """The same content in the type a sloppy peer would use: numbers as strings and back."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return [value]
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if isinstance(value, dict):
        return list(value.values())
    return value


@st.composite
def garbled(draw: st.DrawFn, text: str) -> str:
    """Text damaged the way a bad connection or a buggy peer damages it: cut short, a span
    replaced, characters inserted."""
    action = draw(st.sampled_from(["cut", "splice", "insert"]))
    at = draw(st.integers(0, len(text)))
    if action == "cut":
        return text[:at]
    insert = draw(st.text(max_size=8) | TRICKY_STRINGS.filter(lambda s: len(s) < 100))
    if action == "insert":
        return text[:at] + insert + text[at:]
    end = draw(st.integers(at, len(text)))
    return text[:at] + insert + text[end:]


def near_valid(valid: dict[str, object]) -> st.SearchStrategy[str]:
    """Text close to a valid message: mutated structurally, or damaged as text, or as it is."""
    text = dumps(valid)
    return st.one_of(
        st.just(text),
        mutated(valid).map(dumps),
        garbled(text),
        mutated(valid).map(dumps).flatmap(garbled),
    )
