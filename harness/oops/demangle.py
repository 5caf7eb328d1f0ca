"""Rust symbol names as a reader writes them: the kernel builds Rust code with
``-Csymbol-mangling-version=v0``, so a Rust module's frames print as ``_RNvCs..._7mycrate3foo``.

:func:`demangle` turns such a name into ``mycrate::foo`` (the v0 grammar of the rustc book,
without crate hashes, as ``rustc-demangle``'s alternate form and syzkaller's titles show it);
any other name comes back unchanged, and so does a v0 name this reader cannot parse.
"""

from __future__ import annotations

import functools

_BASIC_TYPES = {
    "a": "i8", "b": "bool", "c": "char", "d": "f64", "e": "str", "f": "f32", "h": "u8",
    "i": "isize", "j": "usize", "l": "i32", "m": "u32", "n": "i128", "o": "u128", "s": "i16",
    "t": "u16", "u": "()", "v": "...", "x": "i64", "y": "u64", "z": "!", "p": "_",
}
_INTEGER_TYPES = {"a", "s", "l", "x", "n", "i", "h", "t", "m", "y", "o", "j"}  # i8 .. usize
_MAX_DEPTH = 100


class _Invalid(Exception):
    pass


class _Reader:
    """One pass over a v0 symbol (after ``_R``), printing as it parses."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.position = 0
        self.depth = 0
        self.bound_lifetimes = 0  # lifetimes of the enclosing for<...> binders

    def peek(self) -> str:
        return self.symbol[self.position] if self.position < len(self.symbol) else ""

    def take(self) -> str:
        char = self.peek()
        if not char:
            raise _Invalid
        self.position += 1
        return char

    def eat(self, char: str) -> bool:
        if self.peek() == char:
            self.position += 1
            return True
        return False

    def base62(self) -> int:
        """``{0-9a-zA-Z} _``: ``_`` alone is 0, else the digits' value plus one."""
        if self.eat("_"):
            return 0
        value = 0
        while not self.eat("_"):
            char = self.take()
            if char.isdigit():
                digit = ord(char) - ord("0")
            elif "a" <= char <= "z":
                digit = 10 + ord(char) - ord("a")
            elif "A" <= char <= "Z":
                digit = 36 + ord(char) - ord("A")
            else:
                raise _Invalid
            value = value * 62 + digit
        return value + 1

    def optional_base62(self, tag: str) -> int:
        """``[tag <base-62-number>]``: absent is 0, present is its value plus one."""
        return self.base62() + 1 if self.eat(tag) else 0

    def decimal(self) -> int:
        start = self.position
        while self.peek().isdigit():
            self.position += 1
        if start == self.position or (self.symbol[start] == "0" and self.position > start + 1):
            raise _Invalid
        return int(self.symbol[start:self.position])

    def identifier(self) -> tuple[str, int]:
        """``[s<n>] [u] <length> [_] <bytes>``: the name and its disambiguator."""
        disambiguator = self.optional_base62("s")
        punycode = self.eat("u")
        length = self.decimal()
        self.eat("_")
        name = self.symbol[self.position:self.position + length]
        if len(name) != length:
            raise _Invalid
        self.position += length
        return (f"punycode{{{name}}}" if punycode else name), disambiguator

    def backref(self, parse):  # type: ignore[no-untyped-def]
        target = self.base62()
        if target >= self.position:
            raise _Invalid
        saved, self.position = self.position, target
        try:
            return parse()
        finally:
            self.position = saved

    def nested(self, parse):  # type: ignore[no-untyped-def]
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _Invalid
        try:
            return parse()
        finally:
            self.depth -= 1

    def path(self, in_value: bool = True) -> str:
        return self.nested(lambda: self._path(in_value))

    def _path(self, in_value: bool) -> str:
        tag = self.take()
        if tag == "C":
            return self.identifier()[0]
        if tag == "M":
            self.optional_base62("s")
            self.path()  # the impl's own path: not shown
            return f"<{self.type()}>"
        if tag == "X":
            self.optional_base62("s")
            self.path()
            return f"<{self.type()} as {self.path(in_value=False)}>"
        if tag == "Y":
            return f"<{self.type()} as {self.path(in_value=False)}>"
        if tag == "N":
            namespace = self.take()
            parent = self.path(in_value)
            name, disambiguator = self.identifier()
            if namespace.isupper():
                kind = {"C": "closure", "S": "shim"}.get(namespace, namespace)
                label = f"{kind}:{name}" if name else kind
                return f"{parent}::{{{label}#{disambiguator}}}"
            return f"{parent}::{name}" if name else parent
        if tag == "I":
            parent = self.path(in_value)
            args = []
            while not self.eat("E"):
                args.append(self.generic_arg())
            return f"{parent}{'::' if in_value else ''}<{', '.join(args)}>"
        if tag == "B":
            return self.backref(lambda: self._path(in_value))
        raise _Invalid

    def generic_arg(self) -> str:
        if self.eat("L"):
            return self.lifetime(self.base62())
        if self.eat("K"):
            return self.const()
        return self.type()

    def lifetime(self, index: int) -> str:
        """A de Bruijn index among the bound lifetimes ('_ when erased)."""
        if index == 0:
            return "'_"
        depth = self.bound_lifetimes - index
        if depth < 0:
            raise _Invalid
        return f"'{chr(ord('a') + depth % 26)}"

    def binder(self) -> tuple[str, int]:
        """``[G <n>]``: the ``for<...>`` text, and how many lifetimes it binds."""
        if not self.eat("G"):
            return "", 0
        count = self.base62() + 1
        first = self.bound_lifetimes
        names = ", ".join(f"'{chr(ord('a') + (first + i) % 26)}" for i in range(count))
        return f"for<{names}> ", count

    def type(self) -> str:
        return self.nested(self._type)

    def _type(self) -> str:
        tag = self.peek()
        if tag in _BASIC_TYPES:
            self.position += 1
            return _BASIC_TYPES[tag]
        if tag in "CMXYNI":
            return self.path(in_value=False)
        self.position += 1
        if tag == "A":
            element = self.type()
            return f"[{element}; {self.const()}]"
        if tag == "S":
            return f"[{self.type()}]"
        if tag == "T":
            items = []
            while not self.eat("E"):
                items.append(self.type())
            return f"({', '.join(items)}{',' if len(items) == 1 else ''})"
        if tag in "RQ":
            lifetime = self.lifetime(self.base62()) + " " if self.eat("L") else ""
            return f"&{lifetime}{'mut ' if tag == 'Q' else ''}{self.type()}"
        if tag in "PO":
            return f"*{'const' if tag == 'P' else 'mut'} {self.type()}"
        if tag == "F":
            binder, bound = self.binder()
            self.bound_lifetimes += bound
            try:
                return binder + self.fn_signature()
            finally:
                self.bound_lifetimes -= bound
        if tag == "D":
            binder, bound = self.binder()
            self.bound_lifetimes += bound
            try:
                traits = self.dyn_traits()
            finally:
                self.bound_lifetimes -= bound
            if self.eat("L"):
                self.base62()
            return f"dyn {binder}{traits}"
        if tag == "B":
            return self.backref(self._type)
        raise _Invalid

    def fn_signature(self) -> str:
        unsafe = "unsafe " if self.eat("U") else ""
        abi = ""
        if self.eat("K"):
            abi = '"C"' if self.eat("C") else f'"{self.identifier()[0].replace("_", "-")}"'
            abi = f"extern {abi} "
        params = []
        while not self.eat("E"):
            params.append(self.type())
        result = self.type()
        tail = "" if result == "()" else f" -> {result}"
        return f"{unsafe}{abi}fn({', '.join(params)}){tail}"

    def dyn_traits(self) -> str:
        traits = []
        while not self.eat("E"):
            trait = self.path(in_value=False)
            while self.eat("p"):
                name = self.identifier()[0]
                trait += f"<{name} = {self.type()}>"
            traits.append(trait)
        return " + ".join(traits)

    def const(self) -> str:
        if self.eat("p"):
            return "_"
        if self.eat("B"):
            return self.backref(self.const)
        kind = self.take()
        negative = self.eat("n")
        start = self.position
        while self.peek() and self.peek() != "_":
            self.position += 1
        digits = self.symbol[start:self.position]
        if not self.eat("_"):
            raise _Invalid
        value = int(digits, 16) if digits else 0
        if kind == "b":
            return "true" if value else "false"
        if kind == "c":
            return repr(chr(value))
        if kind in _INTEGER_TYPES:
            return str(-value if negative else value)
        raise _Invalid


@functools.lru_cache(maxsize=4096)
def demangle(name: str) -> str:
    """``name`` demangled when it is a Rust v0 symbol (``_R...``), else ``name``."""
    if not name.startswith("_R") or len(name) < 4:
        return name
    body = name[2:]
    reader = _Reader(body)
    try:
        if reader.peek().isdigit():
            reader.decimal()  # the encoding version
        return reader.path()
    except (_Invalid, RecursionError, ValueError, OverflowError):  # chr() of a huge char constant
        return name
