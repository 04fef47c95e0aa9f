"""Searching a :class:`~pcitopo.solver.model.Problem` with python-constraint2: the only module that imports it.

The model's variables become the engine's variables (domains reversed: the
engine tries the last value first, the model lists the preferred value
first); ``exact-sum`` constraints become the engine's
:class:`~constraint.ExactSumConstraint`; ``check`` constraints become
constraints the engine calls on every partial assignment, which also prune
the domain of the last unassigned variable of their scope (forward
checking). The objective is a branch and bound: a constraint refuses every
partial assignment whose lower bound exceeds the best cost found so far.

Ties: among assignments of equal cost the search keeps the one whose values,
taken in variable-name order and each as its rank in the variable's domain
(0 = the model's preferred value), are lexicographically smallest. The key
depends on the model only, not on the engine's search order, so every engine
version returns the same plan. The bound refuses a partial assignment that is
dearer than the best, or as dear and unable to reach a smaller key (its
unassigned variables counted at rank 0).

A search that gives up with no assignment where the expander buses of three
NUMA nodes or more share the firmware's IO windows is run again with the
variables taken a context at a time (:class:`_ContextsInTurn`): only what
such a search returns changes.

A fresh engine ``Problem`` is built for every search, as the engine mutates
its domains.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from pcitopo._lazy import without_process_pools
from pcitopo.solver.model import Constraint, Problem

with without_process_pools():  # the engine's parallel solver (multiprocessing) is never used: not imported
    from constraint import Constraint as EngineConstraint
    from constraint import ExactSumConstraint, OptimizedBacktrackingSolver, Unassigned
    from constraint import Problem as EngineProblem

__all__ = ["SearchResult", "search"]


def __dir__() -> list[str]:
    return __all__


NODE_LIMIT = 5_000
"""Partial assignments the objective checks before the search stops and reports the best so far as
``FEASIBLE``. A node costs about a millisecond in a model of some 50 variables (a NUMA request
whose small classes may each go to any of four contexts), so that is a few seconds; the benchmarks'
cases need at most a few hundred. Requests that split many classes over several contexts can need
more, because a context's bound counts the units its open counts must still take only once a
class has a single open count left."""


@attrs.frozen
class SearchResult:
    """What the engine found."""

    values: Mapping[str, int] | None
    """The best assignment (``None``: no assignment meets every hard constraint)."""
    cost: int
    proven: bool
    """Whether the search finished: no assignment is cheaper (and no equal one has a smaller key)."""
    bound: int
    """A lower bound of the objective over every assignment (the cost itself when proven)."""
    variables: int
    constraints: int
    nodes: int
    """Partial assignments the engine built (each checked by the objective's bound)."""
    least_model: int | None = None
    """The least model bound of the complete assignments ``exact`` scored (``None``: none scored).

    Every other assignment was pruned because its bound was above the best (or equal with a larger key), so
    this is what a completion might cost as little as where the objective has terms the model does not bound
    (the order terms): another layout of a scored assignment's decisions, which the model bounds below but
    ``exact`` scored as one layout only."""


class _ModelConstraint(EngineConstraint):  # type: ignore[misc]
    """A model constraint for the engine: called with the assigned values of its scope."""

    whole = False
    """Whether its scope is every variable of the search: the engine's assignments are then its scope's values,
    copied at once rather than picked one name at a time (the objective's and the shared budgets' constraints are
    called on every node)."""

    def __call__(
        self,
        variables: Sequence[str],
        domains: dict[str, Any],
        assignments: dict[str, Any],
        forwardcheck: Any = False,
        _unassigned: Any = Unassigned,
    ) -> bool:
        values = dict(assignments) if self.whole else {v: assignments[v] for v in variables if v in assignments}
        return self.holds(values, variables, domains, assignments, forwardcheck)

    def holds(
        self,
        values: dict[str, int],
        variables: Sequence[str],
        domains: dict[str, Any],
        assignments: dict[str, Any],
        forwardcheck: Any,
    ) -> bool:
        raise NotImplementedError


class _Check(_ModelConstraint):
    """A model ``check`` constraint, with forward checking of its last free variable."""

    def __init__(self, test: Callable[[Mapping[str, int]], bool]) -> None:
        self._test = test

    def holds(
        self,
        values: dict[str, int],
        variables: Sequence[str],
        domains: dict[str, Any],
        assignments: dict[str, Any],
        forwardcheck: Any,
    ) -> bool:
        if not self._test(values):
            return False
        test = self._test
        return not forwardcheck or _hide_last_free(values, variables, domains, assignments, lambda v: not test(v))


def _hide_last_free(
    values: dict[str, int],
    variables: Sequence[str],
    domains: dict[str, Any],
    assignments: dict[str, Any],
    refused: Callable[[dict[str, int]], bool],
) -> bool:
    """Forward checking: when one variable of ``variables`` is left free, hide the values of its domain that
    ``refused`` with the others' ``values`` (those of ``variables`` that are assigned, each variable once);
    ``False`` when none is left."""
    if len(values) != len(variables) - 1:
        return True  # none or more than one free: the values assigned say so without looking for them
    name = next(v for v in variables if v not in assignments)
    domain = domains[name]
    for value in list(domain):
        values[name] = value
        if refused(values):
            domain.hideValue(value)
    return bool(domain)


class _Bound(_ModelConstraint):
    """The objective's branch and bound: refuses partial assignments strictly worse than the best so far."""

    def __init__(
        self,
        bound: Callable[[Mapping[str, int]], int | None],
        rank: Mapping[str, Mapping[int, int]],
        sums: Sequence[tuple[tuple[str, ...], int]] = (),
        floor: Callable[[Mapping[str, int], int | None], int] | None = None,
        limit: int = NODE_LIMIT,
        slack: int = 0,
    ) -> None:
        self._bound = bound
        self._slack = slack
        """How much less than the model's bound a realised plan may cost (see :func:`search`): pruned by less."""
        self._limit = limit
        self._floor = floor
        self._rank = rank
        self._order = sorted(rank)
        self._sums = sums
        self.best: int | None = None
        self.best_key: tuple[int, ...] = ()
        self.nodes = 0

    def implied(self, values: dict[str, int]) -> bool:
        """Set the last open variable of each exact sum to the value the sum leaves it; ``False``: none is left.

        The bound then counts what those units cost where they must go, not
        nothing (an open count is otherwise taken as 0), and prunes sooner.
        """
        for scope, total in self._sums:
            open_ = [n for n in scope if n not in values]
            if len(open_) != 1:
                continue
            left = total - sum(values[n] for n in scope if n in values)
            if left not in self._rank[open_[0]]:
                return False
            values[open_[0]] = left
        return True

    def key(self, values: Mapping[str, int]) -> tuple[int, ...]:
        """The tie-break key; an unassigned variable counts at its best rank (0), so a partial key bounds every
        completion's from below."""
        return tuple(self._rank[n][values[n]] if n in values else 0 for n in self._order)

    def floor_refuses(self, values: Mapping[str, int]) -> bool:
        """Whether the objective's floor alone refuses ``values``: no completion is cheaper than the best so far, nor
        as cheap with a smaller tie-break key (``False`` with no best or no floor)."""
        best, floor = self.best, self._floor
        if best is None or floor is None:
            return False
        low = floor(values, best + self._slack) - self._slack
        return low > best or (low == best and self.key(values) >= self.best_key)

    def holds(
        self,
        values: dict[str, int],
        variables: Sequence[str],
        domains: dict[str, Any],
        assignments: dict[str, Any],
        forwardcheck: Any,
    ) -> bool:
        self.nodes += 1
        if self.nodes > self._limit:
            return False
        if not self.implied(values):
            return False
        if self.floor_refuses(values):
            return False  # no cheaper than the best whatever its bound, nor a smaller key: not worth computing that
        low = self._bound(values)
        if low is None:
            return False
        low -= self._slack
        if self.best is None or low < self.best:
            return True
        # as cheap as the best at most: only a smaller tie-break key can still win
        return low == self.best and self.key(values) < self.best_key


class _FloorAhead(_ModelConstraint):
    """The objective's floor as a forward check, posted before the hard constraints: hides the values of the last
    free variable that :class:`_Bound` would refuse by its floor once set, so that the hard constraints' forward
    checks (a layout each) skip them. It refuses nothing else, and counts no node: the engine visits the nodes it
    visited without it, but those refused by the floor."""

    def __init__(self, bound: _Bound) -> None:
        self._of = bound

    def holds(
        self,
        values: dict[str, int],
        variables: Sequence[str],
        domains: dict[str, Any],
        assignments: dict[str, Any],
        forwardcheck: Any,
    ) -> bool:
        bound = self._of
        if not forwardcheck or bound.best is None or bound._floor is None:
            return True
        return _hide_last_free(values, variables, domains, assignments, bound.floor_refuses)


class _ContextsInTurn(OptimizedBacktrackingSolver):  # type: ignore[misc]
    """The engine's backtracking, its variables taken a context at a time.

    The engine orders variables by how many constraints they are in, then by
    their domain's size: every count is in the objective and the shared
    budgets, so it takes the counts class by class, and every context's scope
    is set only near the leaves. A context's layout and the budgets it takes
    (IO windows: under OVMF each root port with an IO BAR costs one of nine)
    are checked only once its scope is set, so a plan that puts too much in
    the new expander buses is refused at the leaves, under every ordering of
    the classes above them: thousands of nodes to no plan. Taken a context at
    a time (the engine's order within one, the main root's last, as its
    scope holds the new expanders'), each context's layout and its windows
    are checked as soon as its counts are set. The order of the search only:
    the result, when it finishes, is the same (the tie-break key depends on
    the model alone). It is the second order only, for a search that gave up
    in the engine's: the bound prunes less in it (a class's units left open
    are counted only once a single count of it is open, and here every class
    stays open until the last context), so proofs take more nodes (9 of 30
    small requests on three or four nodes proven in the engine's order were
    not within the node limit in this one).
    """

    def __init__(self, turn: Mapping[str, int]) -> None:
        super().__init__()
        self._turn = turn

    def getSortedVariables(self, domains: dict[str, Any], vconstraints: dict[str, Any]) -> list[str]:
        engine = super().getSortedVariables(domains, vconstraints)
        position = {name: i for i, name in enumerate(engine)}
        last = len(self._turn)
        return sorted(engine, key=lambda name: (self._turn.get(name, last), position[name]))


def _contexts_share_io_windows(problem: Problem) -> bool:
    """Whether the firmware's IO windows are shared by three contexts or more beside the main root (the expander
    buses of three NUMA nodes or more): where a search that gave up is run again with :class:`_ContextsInTurn`.
    With two (9 q35 requests of 40 to 120 devices under OVMF), taken a context at a time, the search found no
    cheaper plan, nor a plan where the engine's order gave up."""
    return problem.io_budget is not None and sum(1 for k, scope in problem.context_variables.items() if k and scope) > 2


def _turns(problem: Problem) -> dict[str, int]:
    """Each variable's turn in :class:`_ContextsInTurn`: its context's place, the main root's (0) last."""
    contexts = sorted(problem.context_variables, key=lambda k: (k == 0, k))
    turn: dict[str, int] = {}
    for place, ctx_id in enumerate(contexts):
        for (_, k), name in problem.count_variables.items():
            if k == ctx_id:
                turn.setdefault(name, place)
        own = f"[{ctx_id}]"
        for name in problem.context_variables[ctx_id]:
            if name.endswith(own):
                turn.setdefault(name, place)
    return turn


def search(
    problem: Problem,
    *,
    optimise: bool = True,
    limit: int = NODE_LIMIT,
    exact: Callable[[Mapping[str, int]], int | None] | None = None,
    slack: int = 0,
) -> SearchResult:
    """The cheapest assignment of ``problem``'s variables, ties broken by the documented key.

    ``exact(assignment)``, when given, is the objective of a complete
    assignment (the realised plan's score); the model's bound prunes partial
    ones. Should ``exact`` ever score a complete assignment below the model's
    bound, the pruning was not sound and the result is not claimed proven.
    ``slack``: how much below the model's bound ``exact`` may score an assignment (plans that take what the
    model does not count, the request's empty ports); the bound prunes that much less, and no result is
    claimed proven.

    A search that stops at its node limit with no assignment, where the expander buses of three NUMA nodes or
    more share the firmware's IO windows, is run again with the variables taken a context at a time
    (:class:`_ContextsInTurn`), which refuses sooner the expander buses that need more windows than the
    firmware has (the nodes reported are both searches'). Every search that finds an assignment in the
    engine's order returns what it did.
    """
    result = _search(problem, optimise=optimise, limit=limit, exact=exact, slack=slack)
    gave_up = result.values is None and result.nodes > min(limit, NODE_LIMIT)
    if not gave_up or not _contexts_share_io_windows(problem):
        return result
    again = _search(problem, optimise=optimise, limit=limit, exact=exact, in_turn=True, slack=slack)
    return attrs.evolve(again, nodes=result.nodes + again.nodes)


def _search(
    problem: Problem,
    *,
    optimise: bool,
    limit: int,
    exact: Callable[[Mapping[str, int]], int | None] | None,
    in_turn: bool = False,
    slack: int = 0,
) -> SearchResult:
    """:func:`search` in one order of the variables: the engine's, or a context at a time (``in_turn``)."""
    names = [v.name for v in problem.variables]
    rank = {v.name: {value: i for i, value in enumerate(v.domain)} for v in problem.variables}
    objective = next(c for c in problem.constraints if c.kind == "objective")
    assert objective.bound is not None
    if not names:
        feasible = all(c.test is None or c.test({}) for c in problem.constraints)
        cost = objective.bound({}) if feasible else None
        least = None
        if cost is not None and exact is not None:
            model_cost, cost = cost, exact({})
            if cost is None:
                return SearchResult(None, 0, False, 0, 0, len(problem.constraints), 1)
            if cost < model_cost:
                return SearchResult({}, cost, False, 0, 0, len(problem.constraints), 1)
            least = model_cost
        return SearchResult(
            {} if cost is not None else None, cost or 0, True, cost or 0, 0, len(problem.constraints), 1, least
        )
    if not all(c.test({}) for c in problem.constraints if c.kind == "check" and c.test is not None and not c.scope):
        return SearchResult(None, 0, True, 0, len(names), len(problem.constraints), 0)
    engine = EngineProblem(_ContextsInTurn(_turns(problem)) if in_turn else None)
    for v in problem.variables:
        engine.addVariable(v.name, list(reversed(v.domain)))
    sums = [(c.scope, c.total) for c in problem.constraints if c.kind == "exact-sum"]
    bound = _Bound(objective.bound, rank, sums, objective.floor, min(limit, NODE_LIMIT), slack)
    # the floor's forward check first: the engine calls a variable's constraints in the order they were posted, so
    # it hides the values the floor refuses before the hard constraints lay each out to check it
    ahead = _FloorAhead(bound)
    ahead.whole = bound.whole = True
    engine.addConstraint(ahead, names)
    for c in problem.constraints:
        _post(engine, c, len(names))
    engine.addConstraint(bound, names)
    best: dict[str, int] | None = None
    finished = True
    sound = True
    least_model: list[int] = []  # the least model bound of an assignment exact scored, in a list the moves share
    for solution in engine.getSolutionIter():
        full = {n: int(solution[n]) for n in names}
        cost = objective.bound(full)
        if cost is None:  # pragma: no cover - the bound constraint refused it already
            continue
        key = bound.key(full)
        if bound.best is not None and (cost - slack, key) >= (bound.best, bound.best_key):
            continue  # the engine checks the bound before the last value is final: this one cannot win
        if exact is not None:
            model_cost = cost
            scored = exact(full)
            if scored is None:
                continue  # the realised plan breaks a budget the model only bounds: not a solution
            _note_least(least_model, model_cost)
            cost = scored
            sound = sound and cost >= model_cost
        if bound.best is None or (cost, key) < (bound.best, bound.best_key):
            bound.best = cost
            bound.best_key = key
            best = full
            if optimise:
                # a cheaper incumbent from the engine's: the bound then prunes with it (the result, when the
                # search finishes, is still the least cost and key of all, the incumbent being one of them)
                improved = _improve(
                    problem,
                    full,
                    (cost, key),
                    bound.key,
                    sums,
                    objective.bound,
                    exact,
                    objective.floor,
                    least_model,
                    slack,
                )
                if improved is not None:
                    best, (bound.best, bound.best_key), unsound = improved
                    sound = sound and not unsound
        if not optimise:
            finished = False
            break
    if bound.nodes > min(limit, NODE_LIMIT):
        finished = False
    elif not sound or slack:
        # the bound pruned by less than the plans' scores may undercut it, or ``exact`` undercut it: no proof, but
        # for a plan that costs nothing (no weight is negative), the least key of those that do (see _Bound.holds)
        finished = finished and best is not None and bound.best == 0
    cost = bound.best or 0
    low = cost if finished else objective.bound({}) or 0
    return SearchResult(
        best,
        cost,
        finished and best is not None,
        min(low, cost),
        len(names),
        len(problem.constraints),
        bound.nodes,
        least_model[0] if least_model else None,
    )


def _note_least(least: list[int], model_cost: int) -> None:
    """Keep in ``least`` (empty or one value) the smaller of what it holds and ``model_cost``."""
    if not least:
        least.append(model_cost)
    elif model_cost < least[0]:
        least[0] = model_cost


IMPROVE_LIMIT = 2_000
"""Complete assignments :func:`_improve` scores at most, each incumbent (each about as costly as a node)."""


def _improve(
    problem: Problem,
    start: Mapping[str, int],
    start_score: tuple[int, tuple[int, ...]],
    key: Callable[[Mapping[str, int]], tuple[int, ...]],
    sums: Sequence[tuple[tuple[str, ...], int]],
    bound: Callable[[Mapping[str, int]], int | None],
    exact: Callable[[Mapping[str, int]], int | None] | None,
    floor: Callable[[Mapping[str, int], int | None], int] | None = None,
    least_model: list[int] | None = None,
    slack: int = 0,
) -> tuple[dict[str, int], tuple[int, tuple[int, ...]], bool] | None:
    """A cheaper assignment than ``start`` by local search, with its (cost, key) (``None``: none found).

    The engine searches depth first, so its first solutions differ from the
    best in the deepest variables only, and the bound prunes little with them
    (e.g. on pc under ``hotplug-off-occupied``, where units with no hotplug
    need belong on a new pxb's slots, decided first). This hill climbs from an
    incumbent: a move shifts units of one class from one context to another
    (one step of the count's domain, or all of them), sets one layout
    decision to another value, or both at once, and is taken when the moved
    assignment meets every hard constraint and scores less. The third value
    says whether ``exact`` scored one below the model (the bound unsound).
    ``least_model`` (see :attr:`SearchResult.least_model`) takes the model
    bound of every assignment ``exact`` scores; ``slack`` is :func:`search`'s.
    """
    checks = [c.test for c in problem.constraints if c.kind == "check" and c.scope and c.test is not None]
    domains = problem.domains
    in_sums = {name for scope, _ in sums for name in scope}
    free = [v.name for v in problem.variables if v.name not in in_sums]
    best = dict(start)
    best_score = start_score
    unsound = False
    budget = IMPROVE_LIMIT

    def shifts(values: Mapping[str, int]) -> list[dict[str, int]]:
        out: list[dict[str, int]] = [{}]
        for scope, _ in sums:
            for a in scope:
                have = values[a]
                if not have:
                    continue
                lower = [v for v in domains[a] if v < have]
                for new_a in sorted({max(lower), 0}):
                    for b in scope:
                        if b != a and values[b] + have - new_a in domains[b]:
                            out.append({a: new_a, b: values[b] + have - new_a})
        return out

    def changes(values: Mapping[str, int]) -> list[dict[str, int]]:
        return [{}] + [{name: v} for name in free for v in domains[name] if v != values[name]]

    improved = True
    while improved and budget > 0:
        improved = False
        for shift in shifts(best):
            for change in changes(best):
                if not shift and not change:
                    continue
                budget -= 1
                if budget < 0:
                    break
                trial = {**best, **shift, **change}
                if floor is not None:
                    low = floor(trial, best_score[0] + slack) - slack
                    if low > best_score[0] or (low == best_score[0] and key(trial) >= best_score[1]):
                        continue  # no cheaper than the best whatever its bound, nor a smaller key
                model = bound(trial)
                if model is None:
                    continue
                trial_key = key(trial)
                if (model - slack, trial_key) >= best_score or not all(test(trial) for test in checks):
                    continue
                cost = model
                if exact is not None:
                    scored = exact(trial)
                    if scored is None:
                        continue
                    if least_model is not None:
                        _note_least(least_model, model)
                    unsound = unsound or scored < model
                    cost = scored
                if (cost, trial_key) < best_score:
                    best, best_score, improved = trial, (cost, trial_key), True
                    break
            if improved or budget < 0:
                break
    if best_score == start_score:
        return None
    return best, best_score, unsound


def _post(engine: EngineProblem, c: Constraint, everything: int) -> None:
    """Post ``c`` to the engine; ``everything``: how many variables the search has."""
    if c.kind == "exact-sum":
        engine.addConstraint(ExactSumConstraint(c.total), list(c.scope))
    elif c.kind == "check" and c.scope:
        assert c.test is not None
        check = _Check(c.test)
        check.whole = len(set(c.scope)) == everything  # a scope's names are the search's variables
        engine.addConstraint(check, list(c.scope))
