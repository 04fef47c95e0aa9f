"""A read-only dict for values shared between callers (catalogs, policy weights)."""

from __future__ import annotations

from typing import Any, TypeVar

V = TypeVar("V")


class FrozenDict(dict[str, V]):
    """A dict that refuses changes, so a shared value stays shared safely; hashable, picklable.

    >>> d = FrozenDict({"a": 1})
    >>> d["b"] = 2
    Traceback (most recent call last):
      ...
    TypeError: this mapping is read-only
    >>> import pickle
    >>> pickle.loads(pickle.dumps(d)) == d
    True
    """

    def _refuse(self, *args: object, **kwargs: object) -> None:
        raise TypeError("this mapping is read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]
    __ior__ = _refuse  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items(), key=lambda kv: kv[0])))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self),))
