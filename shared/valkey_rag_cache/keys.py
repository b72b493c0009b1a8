"""Key layout: readable prefix and namespace, then a digest of a structured encoding of the inputs.

Every key of a namespace tree shares the hash tag of its top-level namespace, so each server-side script
touches one hash slot, and namespaces spread over the shards of a cluster by their top segment::

    llmcache:{docs}:e:docs:technical:<digest>   an entry
    llmcache:{docs}:t:a                         the group's version token (invalidate_all)
    llmcache:{docs}:t:n:docs:technical          a namespace token
    llmcache:{docs}:t:s:<source digest>         a source token
    llmcache:{docs}:d:<source digest>:<ns>      the entries of one namespace that depend on a source
    llmcache:{docs}:clock / :stats / :nss       the group's token clock, counters and namespaces
    llmcache:{docs}:v:docs:technical:<part>     semantic index: the vectors of one exact partition (a hash)
    llmcache:{docs}:vl:docs:technical:<part>    semantic index: its change log (a stream), for mirrors
    llmcache:groups                             the top-level namespaces in use

`GroupKeys` names every key of one tree from its base; `KeySchema` names the trees. No other module builds a
key (the scripts get the keys in KEYS, and the bases of the families they derive names from in ARGV).
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from urllib.parse import unquote

from . import slots

__all__ = ["EntryKey", "GroupKeys", "KeySchema", "escape", "glob_escape", "group_keys", "validate_namespace"]

_SAFE = re.compile(r"[^A-Za-z0-9_.\-:]")


@lru_cache(maxsize=4096)
def escape(text: str) -> str:
    """Percent-encode everything but ``[A-Za-z0-9_.-:]``, so keys hold no glob, brace or space characters.

    >>> escape("docs:tech*nical é")
    'docs:tech%2Anical%20%C3%A9'
    """
    return _SAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), text)


def glob_escape(text: str) -> str:
    """Escape a literal for a SCAN MATCH pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def validate_namespace(namespace: str) -> str:
    """A namespace is ``:``-separated non-empty segments of any characters.

    >>> validate_namespace("docs:technical")
    'docs:technical'
    """
    if not isinstance(namespace, str):
        raise TypeError(f"a namespace is a string, got {type(namespace).__name__}")
    if not namespace or any(not seg for seg in namespace.split(":")):
        raise ValueError(f"invalid namespace {namespace!r}: use non-empty segments separated by ':'")
    try:
        namespace.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no key, counter or argument could hold it
        raise ValueError(f"invalid namespace {namespace!r}: it is not valid Unicode text") from None
    return namespace


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(raw: bytes) -> str:
    """URL-safe base64 without padding (`base64.urlsafe_b64encode`'s text, minus its Python wrapper)."""
    return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).rstrip(b"=").decode()


def digest(data: bytes, size: int = 16) -> str:
    """URL-safe base64 of a BLAKE2b digest: short, and free of glob characters."""
    return _b64(hashlib.blake2b(data, digest_size=size).digest())


@lru_cache(maxsize=16384)
def source_digest(source_id: str) -> str:
    """96-bit digest of a source id: ids may hold any characters, keys hold only the digest."""
    if not source_id:
        raise ValueError("a source id must not be empty")
    return digest(source_id.encode("utf-8", "surrogatepass"), 12)


def encode_parts(kind: str, parts: object) -> bytes:
    """Structured, unambiguous encoding of everything that changes the answer."""
    try:
        return json.dumps([kind, parts], sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8", "surrogatepass"
        )
    except TypeError as exc:
        raise TypeError(f"cache key parts must be JSON-serializable: {exc}") from None


@dataclass(frozen=True, slots=True, init=False)
class EntryKey:
    """Where one cached answer lives: its namespace and the digest of its inputs."""

    namespace: str
    digest: str

    def __init__(self, namespace: str, digest: str) -> None:
        _key_namespace(self, namespace)  # one per adapter lookup: see `slots`
        _key_digest(self, digest)

    @property
    def group(self) -> str:
        return self.namespace.split(":", 1)[0]


_key_namespace, _key_digest = slots.setters(EntryKey)


# Token suffixes (after ``t:``): the version, a namespace level, a source.
VERSION = "a"
SOURCE_DIGEST_CHARS = 16  # base64 of source_digest's 12 bytes


def namespace_suffix(namespace: str) -> str:
    return "n:" + escape(namespace)


def source_suffix(source_id: str) -> str:
    return "s:" + source_digest(source_id)


@dataclass(frozen=True, slots=True)
class GroupKeys:
    """Every key of one namespace tree, named from its base ``prefix:{group}:`` (all in one hash slot).

    >>> g = KeySchema("p").group("docs")
    >>> g.clock, g.entry("docs:tech", "abc"), g.token(source_suffix("kb.md"))
    ('p:{docs}:clock', 'p:{docs}:e:docs:tech:abc', 'p:{docs}:t:s:...')
    """

    base: str
    clock: str
    stats: str
    nss: str  # the escaped namespaces of the tree that have dependency sets
    tokens: str  # the base of its tokens: + a suffix (`VERSION`, `namespace_suffix`, `source_suffix`)
    deps: str  # the base of its dependency sets: + source digest + ":" + escaped namespace
    entries: str  # the base of its entries: + escaped namespace + ":" + digest

    @classmethod
    def of(cls, base: str) -> GroupKeys:
        return cls(base, base + "clock", base + "stats", base + "nss", base + "t:", base + "d:", base + "e:")

    def entry_base(self, namespace: str) -> str:
        return f"{self.entries}{escape(namespace)}:"

    def entry(self, namespace: str, digest: str) -> str:
        return f"{self.entries}{escape(namespace)}:{digest}"

    def token(self, suffix: str) -> str:
        return self.tokens + suffix

    def dependents(self, digest: str, escaped_namespace: str) -> str:
        """The set of the entries of one namespace built on the source with this digest."""
        return f"{self.deps}{digest}:{escaped_namespace}"

    def entries_of_deps(self, rest: str) -> str | None:
        """For ``d:<source digest>:<ns>`` (a key's part after the base), that namespace's entry base."""
        head = len("d:") + SOURCE_DIGEST_CHARS
        if not rest.startswith("d:") or len(rest) <= head + 1 or rest[head] != ":":
            return None
        return f"{self.entries}{rest[head + 1 :]}:"


@lru_cache(maxsize=4096)
def group_keys(base: str) -> GroupKeys:
    """The keys of the tree whose base is `base` (one the index of groups lists, or a scanned key's)."""
    return GroupKeys.of(base)


@dataclass(frozen=True)
class KeySchema:
    """Builds every key of one cache prefix.

    >>> ks = KeySchema("llmcache")
    >>> ks.entry(EntryKey("docs:technical", "abc"))
    'llmcache:{docs}:e:docs:technical:abc'
    """

    prefix: str = "llmcache"

    def __post_init__(self) -> None:
        if not isinstance(self.prefix, str) or not self.prefix:
            raise ValueError("the key prefix must be a non-empty string")
        if _SAFE.search(self.prefix):
            raise ValueError(f"the key prefix may hold only [A-Za-z0-9_.-:], got {self.prefix!r}")

    def entry_key(self, kind: str, parts: object, namespace: str) -> EntryKey:
        validate_namespace(namespace)
        return EntryKey(namespace, digest(encode_parts(kind, parts)))

    def group_base(self, group: str) -> str:
        """``prefix:{group}:``; the hash tag puts a namespace tree in one slot."""
        return f"{self.prefix}:{{{escape(group)}}}:"

    def group(self, group: str) -> GroupKeys:
        """Every key of the tree of top-level namespace `group`."""
        return group_keys(self.group_base(group))

    def tree(self, namespace: str) -> GroupKeys:
        """Every key of the tree `namespace` belongs to."""
        return group_keys(self.group_base(namespace.split(":", 1)[0]))

    def entry(self, key: EntryKey) -> str:
        return self.tree(key.namespace).entry(key.namespace, key.digest)

    def entry_base(self, namespace: str) -> str:
        return self.tree(namespace).entry_base(namespace)

    def semantic_vectors(self, namespace: str, partition: str) -> str:
        """The hash of one semantic partition's vectors (field: entry digest), in its tree's slot."""
        return f"{self.group_base(namespace.split(':', 1)[0])}v:{escape(namespace)}:{partition}"

    def semantic_log(self, namespace: str, partition: str) -> str:
        """The stream logging changes to one semantic partition, read by every process's mirror."""
        return f"{self.group_base(namespace.split(':', 1)[0])}vl:{escape(namespace)}:{partition}"

    def token_base(self, group: str) -> str:
        return self.group(group).tokens

    def clock(self, group: str) -> str:
        return self.group(group).clock

    def stats(self, group: str) -> str:
        return self.group(group).stats

    @cached_property
    def groups(self) -> str:
        return f"{self.prefix}:groups"

    source_suffix = staticmethod(source_suffix)

    def scan_pattern(self) -> str:
        return glob_escape(self.prefix) + ":*"

    def group_of_base(self, base: str) -> str | None:
        """The group whose base is exactly `base` (``prefix:{group}:``), or None for anything else.

        >>> ks = KeySchema("llmcache")
        >>> ks.group_of_base("llmcache:{docs}:"), ks.group_of_base("victim:")
        ('docs', None)
        """
        head = self.prefix + ":{"
        if not (base.startswith(head) and base.endswith("}:")):
            return None
        try:
            group = unquote(base[len(head) : -2], errors="strict")
        except UnicodeDecodeError:
            return None
        if not group or ":" in group or self.group_base(group) != base:
            return None  # only the one spelling escape() writes
        return group

    def parse_group_key(self, key: str) -> tuple[str, str] | None:
        """Split ``prefix:{group}:rest`` into (group base, rest); None for keys of other layouts."""
        head = self.prefix + ":{"
        if not key.startswith(head):
            return None
        end = key.find("}:", len(head))
        if end < 0:
            return None
        return key[: end + 2], key[end + 2 :]
