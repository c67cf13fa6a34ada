"""Which known author a question names, by matching it against the authors the store holds.

A small model asked for "the person this question names" finds few of them (1 of 11 on a held-out set) and
invents others; the names are known, so they are matched: full name or last name, any case, with or without
accents, as a possessive, with a small typo, or a first name written as a name. A name that is not in the
store never becomes a filter. When two authors fit equally (a shared last name), the caller decides (the LLM,
constrained to those candidates).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_WORD = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*")
_POSSESSIVE = re.compile(r"(?:['’]s|s['’]|['’])$")


def fold(text: str) -> str:
    """Case and accents out: "Tomás" and "TOMAS" are the same word."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def words(text: str) -> list[tuple[str, str]]:
    """(folded word, as written) for every word, a possessive ending taken off."""
    found = []
    for match in _WORD.finditer(text):
        written = _POSSESSIVE.sub("", match.group(0))
        if written:
            found.append((fold(written), written))
    return found


def close(a: str, b: str) -> bool:
    """Equal, or one edit apart when both words have five letters or more (two for nine or more): short words
    are too easily one letter from a name ("eyes", "Reyes")."""
    if a == b:
        return True
    shorter = min(len(a), len(b))
    allowed = 2 if shorter >= 9 else 1 if shorter >= 5 else 0
    if not allowed or abs(len(a) - len(b)) > allowed:
        return False
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1] <= allowed


@dataclass(frozen=True)
class AuthorMatch:
    author: str | None  # one author, certain enough to filter on
    candidates: tuple[str, ...] = ()  # several fit equally: someone must choose (or none)


class AuthorIndex:
    def __init__(self, authors: list[str]) -> None:
        self.authors = sorted(set(a for a in authors if a.strip()))
        self._parts = {a: [w for w, _ in words(a)] for a in self.authors}

    def match(self, query: str) -> AuthorMatch:
        tokens = words(query)
        folded = [w for w, _ in tokens]
        scores: dict[str, int] = {}
        for author, parts in self._parts.items():
            if not parts:
                continue
            first, last = parts[0], parts[-1]
            if len(parts) > 1 and _contains(folded, parts):
                scores[author] = 3  # the full name
            elif len(last) >= 3 and any(close(w, last) for w in folded):
                scores[author] = 2  # the last name
            elif len(parts) > 1 and any(w == first and written[0].isupper() for w, written in tokens):
                scores[author] = 1  # a first name, written as a name ("Ada", not "ada")
        if not scores:
            return AuthorMatch(None)
        best = max(scores.values())
        top = tuple(a for a, s in scores.items() if s == best)
        if len(top) == 1:
            return AuthorMatch(top[0])
        if len({self._parts[a][-1] for a in top}) == len(top):
            return AuthorMatch(None)  # several people named: one filter would drop the others
        return AuthorMatch(None, top)  # one name that fits several authors (a shared last name)


def _contains(folded: list[str], parts: list[str]) -> bool:
    """The name's words in a row, each allowing its small typo."""
    for start in range(len(folded) - len(parts) + 1):
        if all(close(folded[start + i], part) for i, part in enumerate(parts)):
            return True
    return False
