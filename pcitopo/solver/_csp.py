"""The adapter to python-constraint2: the only module that imports it.

The model handed over is tiny on purpose: one variable per *chunk* of a demand
class that has a real choice of context (8 PCI Express units, the contents of
one root-port slot, or 31 conventional units, one bridge), whose domain is the
ids of the contexts it may go to. Chunks of one class are interchangeable, so
their values are kept non-decreasing (symmetry breaking). One function
constraint checks every partial assignment against the budgets (root-bus
slots, bus numbers, IO windows) and, once a solution is known, against its
cost: a branch and bound over the solutions python-constraint enumerates.
A fresh ``Problem`` is built for every search, as the engine mutates its
domains.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence

import attrs

__all__: list[str] = []


@attrs.frozen
class SearchResult:
    assignment: Mapping[str, int] | None
    cost: int
    optimal: bool
    explored: int


def search(
    variables: Mapping[str, Sequence[int]],
    chains: Sequence[Sequence[str]],
    evaluate: Callable[[Mapping[str, int]], int | None],
    *,
    optimise: bool = True,
    limit: int = 4000,
) -> SearchResult:
    """Find the cheapest assignment of ``variables`` (domain values in order of preference).

    ``evaluate(partial)`` returns ``None`` when a (partial) assignment breaks a
    hard constraint, else a lower bound of its cost (the exact cost when
    complete). ``chains`` lists variables whose values must not decrease.
    """
    if not variables:
        cost = evaluate({})
        return SearchResult({} if cost is not None else None, cost or 0, True, 1)
    # imported here: the engine pulls in multiprocessing, longer to import than most plans take to make
    from constraint import FunctionConstraint, Problem, Unassigned

    problem = Problem()
    names = sorted(variables)
    for name in names:
        # python-constraint tries the last value of a domain first
        problem.addVariable(name, list(reversed(list(variables[name]))))
    for chain in chains:
        for a, b in itertools.pairwise(chain):
            problem.addConstraint(_non_decreasing, [a, b])
    best: list[int | None] = [None]

    def check(*values: object) -> bool:
        partial = {n: int(v) for n, v in zip(names, values, strict=False) if v is not Unassigned}  # type: ignore[call-overload]
        cost = evaluate(partial)
        if cost is None:
            return False
        bound = best[0]
        return bound is None or cost < bound

    problem.addConstraint(FunctionConstraint(check, assigned=False), names)
    found: dict[str, int] | None = None
    explored = 0
    optimal = True
    for solution in problem.getSolutionIter():
        explored += 1
        full = {n: int(solution[n]) for n in names}
        cost = evaluate(full)
        if cost is None:  # pragma: no cover - check() already refused it
            continue
        if best[0] is None or cost < best[0] or (cost == best[0] and _key(full) < _key(found or full)):
            best[0] = cost
            found = full
        if not optimise:
            break
        if explored >= limit:
            optimal = False
            break
    return SearchResult(found, best[0] or 0, optimal, explored)


def _key(assignment: Mapping[str, int]) -> tuple[int, ...]:
    return tuple(assignment[n] for n in sorted(assignment))


def _non_decreasing(a: int, b: int) -> bool:
    return a <= b
