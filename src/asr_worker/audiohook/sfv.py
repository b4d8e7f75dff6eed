"""HTTP Structured Field Values (RFC 8941), as much as message signatures need: parse a
Dictionary (the `Signature` and `Signature-Input` fields), serialize Items and Inner Lists
(the signature base is rebuilt from what was parsed, as the reference verifier does).

Bare items are `int`, `float` (Decimal), `str` (String), `Token`, `bytes` (Byte Sequence) and
`bool`. Anything malformed raises `SfvError`.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Final


class SfvError(ValueError):
    pass


class Token(str):
    """A Token bare item (unquoted), as opposed to a String."""

    __slots__ = ()


BareItem = int | float | str | bytes | bool
Params = tuple[tuple[str, BareItem], ...]


@dataclass(frozen=True, slots=True)
class Item:
    value: BareItem
    params: Params = ()


@dataclass(frozen=True, slots=True)
class InnerList:
    items: tuple[Item, ...]
    params: Params = ()


Member = Item | InnerList

_KEY_FIRST: Final = frozenset("abcdefghijklmnopqrstuvwxyz*")
_KEY_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-.*")
_TOKEN_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:/!#$%&'*+-.^_`|~"
)
_TOKEN: Final = re.compile(r"^[a-zA-Z*][a-zA-Z0-9:/!#$%&'*+\-.^_`|~]*$")
_B64: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def parse_dictionary(text: str) -> dict[str, Member]:
    """An RFC 8941 Dictionary (several field lines already joined with `, `)."""
    parser = _Parser(text.strip(" "))
    out: dict[str, Member] = {}
    while not parser.done():
        key = parser.key()
        if parser.peek() == "=":
            parser.pos += 1
            out[key] = parser.item_or_inner_list()
        else:
            out[key] = Item(True, parser.params())
        parser.ows()
        if parser.done():
            return out
        parser.expect(",")
        parser.ows()
        if parser.done():
            raise SfvError("trailing comma")
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        if not text.isascii():
            raise SfvError("not ASCII")
        self.text = text
        self.pos = 0

    def done(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise SfvError(f"expected {char!r} at {self.pos}")
        self.pos += 1

    def ows(self) -> None:
        while self.peek() in (" ", "\t") and not self.done():
            self.pos += 1

    def sp(self) -> None:
        while self.peek() == " ":
            self.pos += 1

    def key(self) -> str:
        if self.peek() not in _KEY_FIRST or self.done():
            raise SfvError(f"bad key at {self.pos}")
        start = self.pos
        while not self.done() and self.peek() in _KEY_CHARS:
            self.pos += 1
        return self.text[start : self.pos]

    def item_or_inner_list(self) -> Member:
        if self.peek() == "(":
            return self.inner_list()
        return Item(self.bare_item(), self.params())

    def inner_list(self) -> InnerList:
        self.expect("(")
        items: list[Item] = []
        while not self.done():
            self.sp()
            if self.peek() == ")":
                self.pos += 1
                return InnerList(tuple(items), self.params())
            items.append(Item(self.bare_item(), self.params()))
            if self.peek() not in (" ", ")"):
                raise SfvError(f"bad inner list at {self.pos}")
        raise SfvError("unterminated inner list")

    def params(self) -> Params:
        out: dict[str, BareItem] = {}
        while self.peek() == ";":
            self.pos += 1
            self.sp()
            key = self.key()
            value: BareItem = True
            if self.peek() == "=":
                self.pos += 1
                value = self.bare_item()
            out[key] = value
        return tuple(out.items())

    def bare_item(self) -> BareItem:
        char = self.peek()
        if char == "-" or (char.isdigit() and char != ""):
            return self.number()
        if char == '"':
            return self.string()
        if char == ":":
            return self.byte_sequence()
        if char == "?":
            return self.boolean()
        if (char.isalpha() and char.isascii()) or char == "*":
            return self.token()
        raise SfvError(f"bad item at {self.pos}")

    def number(self) -> int | float:
        start = self.pos
        if self.peek() == "-":
            self.pos += 1
        digits_start = self.pos
        dot = -1
        while not self.done() and (self.peek().isdigit() or (self.peek() == "." and dot < 0)):
            if self.peek() == ".":
                if self.pos - digits_start > 12:
                    raise SfvError("decimal too long")
                dot = self.pos
            self.pos += 1
        digits = self.text[digits_start : self.pos]
        if not digits or not digits[0].isdigit():
            raise SfvError("bad number")
        if dot < 0:
            if len(digits) > 15:
                raise SfvError("integer too long")
            return int(self.text[start : self.pos])
        fraction = self.pos - dot - 1
        if fraction < 1 or fraction > 3 or len(digits) > 16:
            raise SfvError("bad decimal")
        return float(self.text[start : self.pos])

    def string(self) -> str:
        self.expect('"')
        out: list[str] = []
        while not self.done():
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\":
                if self.done() or self.text[self.pos] not in ('"', "\\"):
                    raise SfvError("bad escape")
                out.append(self.text[self.pos])
                self.pos += 1
            elif char == '"':
                return "".join(out)
            elif not " " <= char <= "~":
                raise SfvError("bad string character")
            else:
                out.append(char)
        raise SfvError("unterminated string")

    def token(self) -> Token:
        start = self.pos
        self.pos += 1
        while not self.done() and self.peek() in _TOKEN_CHARS:
            self.pos += 1
        return Token(self.text[start : self.pos])

    def byte_sequence(self) -> bytes:
        self.expect(":")
        end = self.text.find(":", self.pos)
        if end < 0:
            raise SfvError("unterminated byte sequence")
        chunk = self.text[self.pos : end]
        self.pos = end + 1
        if any(c not in _B64 for c in chunk):
            raise SfvError("bad byte sequence")
        try:
            return base64.b64decode(chunk + "=" * (-len(chunk) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise SfvError("bad byte sequence") from None

    def boolean(self) -> bool:
        self.expect("?")
        char = self.peek()
        if char not in ("0", "1") or self.done():
            raise SfvError("bad boolean")
        self.pos += 1
        return char == "1"


# --- serializing --------------------------------------------------------------------------------


def serialize_bare(value: BareItem) -> str:
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        if not -(10**15) < value < 10**15:
            raise SfvError("integer out of range")
        return str(value)
    if isinstance(value, float):
        text = f"{round(value, 3):.3f}".rstrip("0")
        return text + "0" if text.endswith(".") else text
    if isinstance(value, Token):
        if _TOKEN.match(value) is None:
            raise SfvError("bad token")
        return str(value)
    if isinstance(value, str):
        if any(not " " <= c <= "~" for c in value):
            raise SfvError("string must be printable ASCII")
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return ":" + base64.b64encode(value).decode() + ":"


def serialize_params(params: Params) -> str:
    return "".join(f";{key}" if value is True else f";{key}={serialize_bare(value)}" for key, value in params)


def serialize_item(item: Item) -> str:
    return serialize_bare(item.value) + serialize_params(item.params)


def serialize_inner_list(inner: InnerList) -> str:
    return "(" + " ".join(serialize_item(i) for i in inner.items) + ")" + serialize_params(inner.params)
