"""The drift timeline: each environment's drift reports as bars over real time, one lane per environment.

A report is a bar from when it was found to when it was resolved (or to now while it is open),
coloured by its state (`dashboard.drift_state`): open, healing, accepted, healed, resynced. Reports
that overlap in one environment take rows of their own in its lane. The layout is computed here as
plain numbers and drawn by the `timeline` template macro as SVG (no script, no inline styles: the
pages' Content-Security-Policy allows neither).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

WIDTH = 960
LABEL = 150
"""Room on the left for lane names (environments)."""
ROW = 20
AXIS = 24
MIN_BAR = 6.0
STATES = ("open", "healing", "accepted", "healed", "resynced")


@dataclass(frozen=True)
class Episode:
    """One drift report as the timeline sees it."""

    report_id: int
    environment: str
    opened: datetime
    closed: datetime | None
    state: str
    items: int
    label: str
    """The state as people read it, e.g. `healing (sync #7)`."""


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    state: str
    href: str
    title: str
    current: bool
    ongoing: bool
    caption: str
    """Drawn inside the bar when it is wide enough (`#4 · 49 items · open`)."""

    @property
    def captioned(self) -> bool:
        return self.width >= 7 * len(self.caption) + 16


@dataclass(frozen=True)
class Lane:
    name: str
    y: float
    height: float


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Timeline:
    width: int
    height: int
    plot_left: float
    lanes: list[Lane] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    now_x: float = 0.0

    @property
    def empty(self) -> bool:
        return not self.bars

    @property
    def states(self) -> list[str]:
        """The states drawn, in legend order."""
        drawn = {bar.state for bar in self.bars}
        return [state for state in STATES if state in drawn]


def lay_out(episodes: Sequence[Episode], now: datetime, current: int | None = None) -> Timeline:
    """Place every episode on a shared time axis from the first report to `now`; `current` is outlined."""
    if not episodes:
        return Timeline(WIDTH, ROW + AXIS, LABEL)
    start = min(e.opened for e in episodes)
    end = max([now, *(e.closed for e in episodes if e.closed is not None)])
    span = max((end - start).total_seconds(), 60.0)
    start -= timedelta(seconds=span * 0.02)
    span *= 1.02
    plot = WIDTH - LABEL - 12

    def x_of(at: datetime) -> float:
        return LABEL + (at - start).total_seconds() / span * plot

    lanes, bars, top = [], [], 6.0
    for name in dict.fromkeys(e.environment for e in sorted(episodes, key=lambda e: e.environment)):
        mine = sorted((e for e in episodes if e.environment == name), key=lambda e: (e.opened, e.report_id))
        rows: list[float] = []
        for episode in mine:
            left = x_of(episode.opened)
            right = max(x_of(episode.closed or end), left + MIN_BAR)
            row = next((index for index, edge in enumerate(rows) if edge + 2 <= left), len(rows))
            rows[row:row + 1] = [right]
            bars.append(Bar(x=left, y=top + row * ROW + 3, width=right - left, state=episode.state,
                            href=f"/drift/{episode.report_id}", title=_title(episode),
                            current=episode.report_id == current, ongoing=episode.closed is None,
                            caption=f"#{episode.report_id} · {episode.items} item{'s' if episode.items != 1 else ''}"
                                    f" · {episode.label}"))
        height = max(len(rows), 1) * ROW
        lanes.append(Lane(name, top, height))
        top += height + 6
    ticks = [Tick(LABEL + plot * i / 4, _tick(start + timedelta(seconds=span * i / 4), span)) for i in range(5)]
    return Timeline(WIDTH, int(top + AXIS), LABEL, lanes, bars, ticks, now_x=x_of(now))


def _title(episode: Episode) -> str:
    found = episode.opened.strftime("%Y-%m-%d %H:%M UTC")
    until = f"resolved {episode.closed.strftime('%Y-%m-%d %H:%M UTC')}" if episode.closed else "still open"
    return (f"Report #{episode.report_id} — {episode.label}: {episode.items} item{'s' if episode.items != 1 else ''}, "
            f"found {found}, {until}")


def _tick(at: datetime, span: float) -> str:
    """Dates when the axis spans days, times of day when it spans hours."""
    return at.strftime("%b %d") if span > 2 * 86400 else at.strftime("%b %d %H:%M")
