"""The recorded-quote archive shipped inside the package (see ``data/README.md``).

Layout: ``quotes/<UNDERLYING>/<YYYY-MM-DD>/<SYMBOL>.csv.gz``, gzip'd CSV with the header
``t,bp,bs,ap,as``, ``t`` an RFC3339 UTC timestamp with milliseconds (``2013-10-07T13:30:00.241Z``).
The directory date is the exchange (America/New_York) trading day, so a day's file may hold rows
stamped on the next UTC date (after-hours, 20:00 ET = 00:00 UTC).

Reading is pure file I/O on the package's own data: no clock, no network.
"""

from __future__ import annotations

import bisect
import gzip
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from services.conventions.quote import Quote

__all__ = [
    "RecordedArchive",
    "RecordedFileError",
    "default_archive_root",
    "parse_quote_csv",
]

_HEADER = "t,bp,bs,ap,as"


class RecordedFileError(ValueError):
    """A recorded quote file does not follow the documented format."""


def default_archive_root() -> Path:
    """The packaged data directory (``services/marketdata/data``)."""
    return Path(__file__).resolve().parent.parent / "data"


def parse_quote_csv(symbol: str, text: str, *, source: str = "<text>") -> list[Quote]:
    """Parse one recorded file's CSV text into Quotes, in file order.

    Prices become ``Decimal`` straight from their text (never through float); ``t`` must be the
    fixed ``YYYY-MM-DDTHH:MM:SS.mmmZ`` form, parsed by the C ``fromisoformat`` (UTC-aware).
    """
    lines = text.splitlines()
    if not lines or lines[0].strip() != _HEADER:
        raise RecordedFileError(f"{source}: header must be {_HEADER!r}")
    out: list[Quote] = []
    append = out.append
    parse_ts = datetime.fromisoformat
    dec = Decimal
    for lineno, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        try:
            t, bp, bs, ap, asz = line.split(",")
            if len(t) != 24 or t[-1] != "Z":
                raise ValueError(f"timestamp {t!r} is not YYYY-MM-DDTHH:MM:SS.mmmZ")
            append(Quote(symbol, parse_ts(t), dec(bp), dec(ap), int(bs), int(asz)))
        except (ValueError, ArithmeticError) as exc:
            raise RecordedFileError(f"{source}:{lineno}: {exc}") from exc
    return out


@dataclass(frozen=True)
class _Entry:
    underlying: str
    path: Path


class RecordedArchive:
    """Index of the recorded days and symbols, with a per-(symbol, day) parse cache.

    The directory tree is scanned once, lazily. ``load`` returns a fresh list each call (the
    cached parse is a tuple), so callers may mutate what they get.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else default_archive_root()
        self._index: dict[date, dict[str, _Entry]] | None = None
        self._cache: dict[tuple[str, date], tuple[Quote, ...]] = {}

    # -- index -------------------------------------------------------------------------------
    def _scan(self) -> dict[date, dict[str, _Entry]]:
        if self._index is None:
            index: dict[date, dict[str, _Entry]] = {}
            quotes = self.root / "quotes"
            if not quotes.is_dir():
                raise FileNotFoundError(f"no recorded quotes under {quotes}")
            for under_dir in sorted(p for p in quotes.iterdir() if p.is_dir()):
                for day_dir in sorted(p for p in under_dir.iterdir() if p.is_dir()):
                    day = date.fromisoformat(day_dir.name)
                    per_day = index.setdefault(day, {})
                    for f in day_dir.glob("*.csv.gz"):
                        per_day[f.name.removesuffix(".csv.gz")] = _Entry(under_dir.name, f)
            self._index = index
        return self._index

    def days(self, symbol: str | None = None) -> list[date]:
        """Recorded trading days, ascending; only those holding ``symbol`` when given."""
        index = self._scan()
        return sorted(d for d, syms in index.items() if symbol is None or symbol in syms)

    def symbols(self, day: date, underlying: str | None = None) -> list[str]:
        """Symbols recorded on ``day`` (optionally under one underlying), sorted."""
        per_day = self._scan().get(day, {})
        return sorted(
            s for s, e in per_day.items() if underlying is None or e.underlying == underlying
        )

    def underlyings(self) -> list[str]:
        """Underlying directories (equity tickers) present in the archive, sorted."""
        return sorted({e.underlying for per_day in self._scan().values() for e in per_day.values()})

    def underlying_of(self, symbol: str, day: date) -> str:
        """The underlying directory ``symbol`` is filed under on ``day``."""
        return self._entry(symbol, day).underlying

    def path(self, symbol: str, day: date) -> Path:
        return self._entry(symbol, day).path

    def has(self, symbol: str, day: date) -> bool:
        return symbol in self._scan().get(day, {})

    def _entry(self, symbol: str, day: date) -> _Entry:
        try:
            return self._scan()[day][symbol]
        except KeyError:
            raise KeyError(f"no recorded quotes for {symbol} on {day.isoformat()}") from None

    # -- quotes ------------------------------------------------------------------------------
    def load(self, symbol: str, day: date) -> list[Quote]:
        """All quotes of ``symbol`` recorded on trading day ``day``, sorted by ``ts``."""
        return list(self.load_shared(symbol, day))

    def load_shared(self, symbol: str, day: date) -> tuple[Quote, ...]:
        """Like ``load`` but returns the cached tuple itself (no copy)."""
        key = (symbol, day)
        cached = self._cache.get(key)
        if cached is None:
            path = self.path(symbol, day)
            with gzip.open(path, "rb") as fh:
                text = fh.read().decode("ascii")
            cached = tuple(parse_quote_csv(symbol, text, source=str(path)))
            self._cache[key] = cached
        return cached

    def quotes_between(self, symbol: str, start: datetime, end: datetime) -> list[Quote]:
        """Quotes of ``symbol`` with ``start <= ts < end`` across every recorded day."""
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("start and end must be timezone-aware")
        # A day's file spans from its ET pre-market to past UTC midnight: widen by a day.
        lo, hi = (start - timedelta(days=1)).date(), (end + timedelta(days=1)).date()
        out: list[Quote] = []
        for day in self.days(symbol):
            if lo <= day <= hi:
                out.extend(_slice(self.load_shared(symbol, day), start, end))
        return out


def _slice(seq: Sequence[Quote], start: datetime, end: datetime) -> Sequence[Quote]:
    i = bisect.bisect_left(seq, start, key=_ts)
    j = bisect.bisect_left(seq, end, lo=i, key=_ts)
    return seq[i:j]


def _ts(q: Quote) -> datetime:
    return q.ts
