"""A credential in memory that never prints (the shared market-data secret, a broker token)."""

from __future__ import annotations

from typing import final

__all__ = ["Secret"]


@final
class Secret:
    """A credential that does not print: ``repr``, ``str`` and f-strings show ``**********``.

    Only `reveal` gives the value, for handing it to the client library. It cannot be pickled
    (into a queue, a cache or a crash dump).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not picklable")
