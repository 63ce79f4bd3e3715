"""Subscription filters: the common subset of the official filter syntax, parsed once and evaluated per message.

Supported (as the Pub/Sub documentation writes them):
    attributes:key                      the attribute exists
    attributes.key = "value"            equality (also `!=`)
    hasPrefix(attributes.key, "pre")    prefix match
    NOT expr, expr AND expr, expr OR expr, ( expr )
NOT binds tighter than AND, AND tighter than OR. A filter is at most 256 bytes. The empty filter matches
everything. `compile_filter` raises INVALID_ARGUMENT for anything else, as the real service does.

    >>> compile_filter('attributes.type = "a" AND NOT attributes:debug')({"type": "a"})
    True
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from emulator.pubsub.errors import invalid_argument

Predicate = Callable[[Mapping[str, str]], bool]

MAX_FILTER_BYTES = 256

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op>!=|=|:|\(|\)|,)
      | (?P<word>[A-Za-z_][A-Za-z0-9_\-]*)
      | (?P<dot>\.)
    )""",
    re.VERBOSE,
)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise invalid_argument(f"Invalid filter: unexpected character at {pos}: {text[pos : pos + 10]!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        tokens.append((kind, value))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, kind: str, value: str | None = None) -> str:
        token = self.peek()
        if token is None or token[0] != kind or (value is not None and token[1] != value):
            want = value or kind
            got = token[1] if token else "end of filter"
            raise invalid_argument(f"Invalid filter: expected {want}, got {got!r}")
        self.pos += 1
        return token[1]

    def at_word(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token == ("word", word)

    def parse(self) -> Predicate:
        predicate = self.parse_or()
        if self.peek() is not None:
            raise invalid_argument(f"Invalid filter: unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return predicate

    def parse_or(self) -> Predicate:
        terms = [self.parse_and()]
        while self.at_word("OR"):
            self.pos += 1
            terms.append(self.parse_and())
        if len(terms) == 1:
            return terms[0]
        return lambda attrs: any(term(attrs) for term in terms)

    def parse_and(self) -> Predicate:
        terms = [self.parse_not()]
        while self.at_word("AND"):
            self.pos += 1
            terms.append(self.parse_not())
        if len(terms) == 1:
            return terms[0]
        return lambda attrs: all(term(attrs) for term in terms)

    def parse_not(self) -> Predicate:
        if self.at_word("NOT"):
            self.pos += 1
            inner = self.parse_not()
            return lambda attrs: not inner(attrs)
        return self.parse_atom()

    def parse_atom(self) -> Predicate:
        token = self.peek()
        if token == ("op", "("):
            self.pos += 1
            inner = self.parse_or()
            self.take("op", ")")
            return inner
        if token == ("word", "hasPrefix"):
            self.pos += 1
            self.take("op", "(")
            key = self.parse_key(allow_exists=False)
            self.take("op", ",")
            prefix = self.take("string")
            self.take("op", ")")
            return lambda attrs: attrs.get(key, None) is not None and attrs[key].startswith(prefix)
        key_or_exists = self.parse_key(allow_exists=True)
        if isinstance(key_or_exists, tuple):
            key = key_or_exists[1]
            return lambda attrs: key in attrs
        key = key_or_exists
        op = self.take("op")
        if op not in ("=", "!="):
            raise invalid_argument(f"Invalid filter: expected = or != after attributes.{key}, got {op!r}")
        value = self.take("string")
        if op == "=":
            return lambda attrs: attrs.get(key) == value
        # The documented meaning of != : the attribute is absent or has another value.
        return lambda attrs: attrs.get(key) != value

    def parse_key(self, allow_exists: bool) -> str | tuple[str, str]:
        self.take("word", "attributes")
        token = self.peek()
        if allow_exists and token == ("op", ":"):
            self.pos += 1
            return ("exists", self._key_name())
        self.take("dot")
        return self._key_name()

    def _key_name(self) -> str:
        token = self.peek()
        if token is None or token[0] not in ("word", "string"):
            raise invalid_argument("Invalid filter: expected an attribute key")
        self.pos += 1
        return token[1]


def compile_filter(text: str) -> Predicate | None:
    """Parse a filter; None for the empty filter (every message matches). Raises INVALID_ARGUMENT."""
    if len(text.encode()) > MAX_FILTER_BYTES:
        raise invalid_argument(f"Invalid filter: longer than {MAX_FILTER_BYTES} bytes")
    if not text.strip():
        return None
    return _Parser(_tokenize(text)).parse()
