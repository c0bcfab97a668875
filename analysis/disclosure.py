"""Complementary (secondary) cell suppression for published count tables.

Hiding every count below k is not enough when the tables also publish totals: if a row shows "All offences = 12"
and every offence group but one, the hidden group is 12 minus the others. Statistical offices therefore suppress a
second cell in every additive relation that would otherwise have exactly one hidden member (tau-ARGUS, sdcTable).
Those tools solve an optimisation over all relations (least information lost); they are R or Java programs with no
maintained Python equivalent, so this module does the classic greedy version by hand: while some relation has
exactly one hidden member, hide its smallest visible member as well (the least information lost per step), and
repeat until no relation is left with a single hidden member. The greedy result hides somewhat more than an
optimal one would, never less.

A relation is a set of positions in one flat vector of published counts whose members add up exactly (a total
and its parts; the total is a member like any other: knowing every member but one gives that one).
"""

from __future__ import annotations

import numpy as np


class Relations:
    """Additive relations over positions of one flat vector of counts, collected as index arrays."""

    def __init__(self) -> None:
        self._sets: list[np.ndarray] = []

    def add(self, members: np.ndarray) -> None:
        """One relation per row of a 2-D index array (or one for a 1-D array); sets of fewer than 2 are ignored."""
        members = np.asarray(members, dtype=np.int64)
        if members.ndim == 1:
            members = members[None, :]
        if members.shape[1] >= 2:
            self._sets.extend(members)

    def __len__(self) -> int:
        return len(self._sets)

    def csr(self) -> tuple[np.ndarray, np.ndarray]:
        """(relation id per entry, position per entry), flat."""
        if not self._sets:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        sizes = np.fromiter((len(s) for s in self._sets), dtype=np.int64, count=len(self._sets))
        return np.repeat(np.arange(len(self._sets)), sizes), np.concatenate(self._sets)


def complementary_suppression(values: np.ndarray, hidden: np.ndarray, relations: Relations,
                              max_rounds: int = 1000) -> np.ndarray:
    """The final hidden mask: `hidden` (the primary suppressions) plus whatever must also be hidden so that no
    relation has exactly one hidden member. `values` rank the candidates (the smallest visible member goes)."""
    hidden = np.asarray(hidden, dtype=bool).copy()
    values = np.asarray(values, dtype=float)
    rel, pos = relations.csr()
    if not len(rel):
        return hidden
    for _ in range(max_rounds):
        n_hidden = np.bincount(rel, weights=hidden[pos], minlength=len(relations))
        single = n_hidden[rel] == 1
        candidates = single & ~hidden[pos]
        if not candidates.any():
            return hidden
        # per relation with one hidden member, its smallest visible member (ties: the first position)
        c_rel, c_pos = rel[candidates], pos[candidates]
        order = np.lexsort((c_pos, values[c_pos], c_rel))
        c_rel, c_pos = c_rel[order], c_pos[order]
        first = np.r_[True, c_rel[1:] != c_rel[:-1]]
        hidden[c_pos[first]] = True
    raise RuntimeError(f"complementary suppression did not settle in {max_rounds} rounds")


def single_hidden_relations(hidden: np.ndarray, relations: Relations) -> int:
    """How many relations have exactly one hidden member (0 after `complementary_suppression`)."""
    rel, pos = relations.csr()
    if not len(rel):
        return 0
    return int((np.bincount(rel, weights=np.asarray(hidden, dtype=bool)[pos], minlength=len(relations)) == 1).sum())
