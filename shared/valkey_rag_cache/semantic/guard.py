"""`LookalikeGuard`: the cheap check of what embeddings miss between two questions that look alike.

Embeddings put "Cancel my subscription" and "Don't cancel my subscription" close together; a semantic cache
must not answer one with the other. The guard compares the two questions' *facts* and refuses the match when
they differ:

- numbers (``3``, ``2.5``, ``10%``, ``$40``, number words), years, months and weekdays;
- negation (``not``, ``n't``, ``never``, ``no``, ``without``...) and a short list of opposite words
  (``on``/``off``, ``open``/``closed``, ``include``/``exclude``...);
- named things: capitalised words not at the start of a sentence, words with digits or inner capitals
  (``iPhone``, ``X200``), acronyms.

It is deliberately cheap (a few regular expressions per question) and conservative: a paraphrase that
names the same things passes. Pass ``guard=None`` to `SemanticCache` to turn it off.

Example:
    >>> guard = LookalikeGuard()
    >>> guard.compatible("How do I cancel my plan?", "How can I cancel my plan?")
    True
    >>> guard.compatible("Cancel my subscription", "Don't cancel my subscription")
    False
    >>> guard.reason("Is the Pro plan $20?", "Is the Team plan $20?")
    'named things differ'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["LookalikeGuard"]

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'’\-]*|\d+[A-Za-z][A-Za-z0-9\-]*|\$?\d[\d,]*(?:\.\d+)?%?")
_NUMBER = re.compile(r"\$?\d[\d,]*(?:\.\d+)?%?")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n)[\"'(]*([A-Za-z][\w'’\-]*)")

# "one", "second" and "once" are left out: far more often words ("quick one", "a second") than numbers.
_NUMBER_WORDS = {
    "zero": "0", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "twenty": "20", "thirty": "30",
    "forty": "40", "fifty": "50", "hundred": "100", "thousand": "1000", "million": "1e6", "billion": "1e9",
    "first": "1st", "third": "3rd", "fourth": "4th", "fifth": "5th", "half": "0.5", "twice": "x2",
}  # fmt: skip
_TIME_WORDS = {
    "january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
    "november", "december", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
    "today", "tomorrow", "yesterday", "tonight", "weekend", "weekday", "weekdays", "weekends", "morning",
    "evening", "night", "daily", "weekly", "monthly", "yearly", "annual", "annually", "quarterly", "hourly",
}  # fmt: skip
_COLOURS = {
    "red", "blue", "green", "yellow", "orange", "purple", "pink", "black", "white", "grey", "gray", "brown",
    "silver", "gold",
}  # fmt: skip
_NEGATIONS = {
    "not", "no", "never", "none", "nothing", "nobody", "neither", "nor", "without", "cannot", "can't",
    "won't", "don't", "doesn't", "didn't", "isn't", "aren't", "wasn't", "weren't", "shouldn't", "wouldn't",
    "couldn't", "mustn't", "haven't", "hasn't", "hadn't", "except", "unless",
}  # fmt: skip
# Words whose swap flips the question; each maps to the name of its pair.
_OPPOSITES = [
    ("on", "off"), ("open", "closed"), ("open", "close"), ("enable", "disable"), ("enabled", "disabled"),
    ("include", "exclude"), ("includes", "excludes"), ("included", "excluded"), ("allow", "ban"),
    ("allowed", "banned"), ("allowed", "forbidden"), ("allowed", "prohibited"), ("safe", "unsafe"),
    ("before", "after"), ("add", "remove"), ("increase", "decrease"), ("raise", "lower"), ("start", "stop"),
    ("start", "end"), ("buy", "sell"), ("upgrade", "downgrade"), ("min", "max"), ("minimum", "maximum"),
    ("most", "least"), ("more", "less"), ("more", "fewer"), ("higher", "lower"),
    ("earliest", "latest"), ("first", "last"), ("accept", "reject"), ("join", "leave"), ("lock", "unlock"),
    ("subscribe", "unsubscribe"), ("install", "uninstall"), ("import", "export"), ("upload", "download"),
    ("send", "receive"), ("in", "out"), ("inside", "outside"), ("with", "without"), ("legal", "illegal"),
    ("possible", "impossible"), ("available", "unavailable"), ("able", "unable"), ("can", "cannot"),
    ("eat", "avoid"), ("do", "avoid"), ("yes", "no"), ("true", "false"), ("pass", "fail"), ("win", "lose"),
    ("arrive", "depart"), ("arrival", "departure"), ("import", "export"), ("inbound", "outbound"),
    ("hot", "cold"), ("positive", "negative"), ("above", "below"), ("over", "under"), ("up", "down"),
    ("accept", "decline"), ("best", "worst"), ("benefit", "drawback"), ("benefits", "drawbacks"),
    ("pros", "cons"), ("advantages", "disadvantages"), ("good", "bad"), ("cheap", "expensive"),
    ("men", "women"), ("male", "female"), ("boy", "girl"), ("cover", "exclude"), ("covers", "excludes"),
    ("deposit", "withdraw"), ("credit", "debit"), ("early", "late"), ("new", "old"), ("light", "dark"),
]  # fmt: skip
# Prefixes that negate the word they precede: "mute" and "unmute", "agree" and "disagree".
_NEGATING_PREFIXES = ("un", "dis", "non-", "non", "in", "im", "il", "ir")
_STOP_CAPS = {
    "i", "i'm", "i've", "i'd", "i'll", "ok", "okay", "please", "hi", "hello", "hey", "thanks", "thank",
}  # fmt: skip


def _norm(word: str) -> str:
    """Lower case, without a possessive (``Australia's``) or a plural ``s`` on time words (``Sundays``)."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    if w.endswith("s") and w[:-1] in _TIME_WORDS:
        w = w[:-1]
    return w


@dataclass(frozen=True)
class Facts:
    numbers: frozenset[str]
    times: frozenset[str]  # and colours: a swap of one for another changes the question
    negations: int
    opposites: frozenset[str]
    names: frozenset[str]
    words: frozenset[str]


@dataclass
class LookalikeGuard:
    """Refuses a semantic match when numbers, dates, negation, opposites or named things differ.

    Args:
        numbers, negations, names: turn single checks off.
        extra_opposites: more ``(word, opposite)`` pairs for your domain (plan names are names already).
    """

    numbers: bool = True
    negations: bool = True
    names: bool = True
    extra_opposites: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._opposite_of: dict[str, set[str]] = {}
        for a, b in [*_OPPOSITES, *self.extra_opposites]:
            self._opposite_of.setdefault(a.lower(), set()).add(b.lower())
            self._opposite_of.setdefault(b.lower(), set()).add(a.lower())

    def facts(self, text: str) -> Facts:
        tokens = _WORD.findall(text)
        words = [_norm(t) for t in tokens]
        numbers = {t.replace(",", "").replace("$", "") for t in tokens if _NUMBER.fullmatch(t)}
        numbers |= {_NUMBER_WORDS[w] for w in words if w in _NUMBER_WORDS}
        times = {w for w in words if w in _TIME_WORDS or w in _COLOURS}
        negations = sum(1 for w in words if w in _NEGATIONS or w.endswith("n't") or w.startswith("non-"))
        starts = {m.group(1) for m in _SENTENCE_START.finditer(text)}
        names = set()
        for t in tokens:
            if _NUMBER.fullmatch(t) or _norm(t) in _STOP_CAPS:
                continue
            inner_caps = any(c.isupper() for c in t[1:]) or any(c.isdigit() for c in t)
            if inner_caps or (t[0].isupper() and t not in starts):
                names.add(_norm(t))
        return Facts(
            frozenset(numbers),
            frozenset(times),
            negations,
            frozenset(w for w in words if w in self._opposite_of),
            frozenset(names),
            frozenset(words),
        )

    def reason(self, new: str, cached: str) -> str | None:
        """Why the two questions must not share an answer, or None when the guard sees no difference."""
        a, b = self.facts(new), self.facts(cached)
        if self.numbers and a.numbers != b.numbers:
            return "numbers or dates differ"
        if self.numbers and a.times - b.times and b.times - a.times:
            # Dates, weekdays, colours: a swap, one for another (one more on one side is often a detail).
            return "numbers or dates differ"
        if self.negations:
            if (a.negations % 2) != (b.negations % 2):
                return "negation differs"
            for w in a.opposites - b.opposites:
                if self._opposite_of[w] & (b.opposites - a.opposites):
                    return "opposite words"
            if _prefix_negated(a.words - b.words, b.words - a.words):
                return "negation differs"
        if self.names and (a.names - b.words or b.names - a.words):
            # A named thing on one side that the other does not mention at all (in any case).
            return "named things differ"
        return None

    def compatible(self, new: str, cached: str) -> bool:
        return self.reason(new, cached) is None


def _prefix_negated(only_a: frozenset[str], only_b: frozenset[str]) -> bool:
    """A word on one side is the other side's word with a negating prefix ("unmute" and "mute")."""
    for x, y in ((only_a, only_b), (only_b, only_a)):
        for w in x:
            for prefix in _NEGATING_PREFIXES:
                if w.startswith(prefix) and len(w) - len(prefix) >= 3 and w[len(prefix) :] in y:
                    return True
    return False
