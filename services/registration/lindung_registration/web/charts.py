"""Bar charts as inline SVG, drawn on the server: no JavaScript and no chart library on the page.

The staff pages must work on a cheap phone over a slow connection, so a chart is a few kilobytes
of markup in the HTML itself (one `<rect>` per bar, never per pixel: 92 daily bars are about
10 KB) that scales to the width of its container (`viewBox`, `width="100%"`).

Accessibility (WCAG 2.1 AA): the `<svg>` is an image (`role="img"`) named by its `<title>` and
described by its `<desc>` (`aria-labelledby`), which should say what the chart shows in words;
every bar carries its own `<title>` (label and value) as a tooltip. Text is #1f2937 and bars are
colours with at least 3:1 contrast against white (1.4.11 non-text contrast), the text at least
12 units high at the default width of 640. Every caller-supplied text is escaped.

`daily_points` and `month_series` turn query results into what the charts draw.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from markupsafe import Markup, escape

from lindung_registration.web.format import angka, bulan, tanggal

TEXT = "#1f2937"
GRID = "#d1d5db"
AXIS = "#6b7280"  # the zero line: 4.8:1 against white
# Series colours, each at least 4.5:1 against white; a seventh series takes the first again.
COLOURS = ("#1d4ed8", "#b45309", "#047857", "#7c3aed", "#be123c", "#0e7490")

FONT = 13  # user units; at least 12 at the default width
_CHAR = 0.62 * FONT  # an estimate of a glyph's average width, on the wide side
_LINE = 16  # the distance between lines of text
_PLOT_HEIGHT = 200
_MAX_X_LABELS = 12
_LABEL_GAP = 8  # the least space between two x labels
_WIDEST_BAR = 48  # a few bars stay bars, not blocks
_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def bar_chart(
    points: Sequence[tuple[str, int]],
    *,
    id: str,
    title: str,
    description: str,
    value_format: Callable[[int], str] = angka,
    width: int = 640,
) -> Markup:
    """One vertical bar per (label, value), in order, on a y axis from 0 to a round maximum.

    `id` makes the chart's element ids unique on the page (`ID-title`, `ID-desc`); `title` names
    the chart, `description` says in words what it shows (both read by screen readers);
    `value_format` writes values on the axis and in the bars' tooltips (`rupiah` for money).
    Labels under the axis are thinned to at most 12 that fit, always keeping the first and the
    last. No points draw a small chart saying "Belum ada data" (no data yet)."""
    _check(id, width)
    if not points:
        return _empty(id, title, description, width)
    labels = [label for label, _ in points]
    values = [value for _, value in points]
    y = _y_axis(max(values), value_format)
    x = _x_axis(labels, y.label_width, width)
    top = FONT + 4  # half the top gridline's label is above it
    base = top + _PLOT_HEIGHT
    bar_width = min(x.band * 0.7, _WIDEST_BAR)
    bars = [f'<g class="bars" fill="{COLOURS[0]}">']
    for i, (label, value) in enumerate(points):
        left = x.left + i * x.band + (x.band - bar_width) / 2
        tooltip = f"{label}: {value_format(value)}"
        bars.append(_bar(left, base, bar_width, y.height(value), tooltip))
    bars.append("</g>")
    height = base + x.height
    body = [*_grid(y, x, base), *bars, *_x_labels(x, base)]
    return _svg(id, title, description, width, height, body)


def grouped_bar_chart(
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
    *,
    id: str,
    title: str,
    description: str,
    value_format: Callable[[int], str] = angka,
    width: int = 640,
) -> Markup:
    """Per category (a month), one bar per series (a term) side by side, with a legend on top.

    `series` is (name, values) with one value per category, in the categories' order; the
    series take the colours of `COLOURS` in turn. The rest is as `bar_chart`."""
    _check(id, width)
    for name, values in series:
        if len(values) != len(categories):
            raise ValueError(
                f"series {name!r} has {len(values)} values for {len(categories)} categories"
            )
    if not categories or not series:
        return _empty(id, title, description, width)
    legend, legend_height = _legend([name for name, _ in series], width)
    y = _y_axis(max(max(values) for _, values in series), value_format)
    x = _x_axis(categories, y.label_width, width)
    top = legend_height + FONT + 4
    base = top + _PLOT_HEIGHT
    bar_width = min(x.band * 0.8 / len(series), _WIDEST_BAR)
    group_width = bar_width * len(series)
    body = [*legend, *_grid(y, x, base)]
    for s, (name, values) in enumerate(series):
        body.append(f'<g class="bars" fill="{COLOURS[s % len(COLOURS)]}">')
        for i, (category, value) in enumerate(zip(categories, values, strict=True)):
            left = x.left + i * x.band + (x.band - group_width) / 2 + s * bar_width
            tooltip = f"{category}, {name}: {value_format(value)}"
            body.append(_bar(left, base, bar_width, y.height(value), tooltip))
        body.append("</g>")
    body.extend(_x_labels(x, base))
    return _svg(id, title, description, width, base + x.height, body)


def daily_points(
    counts: Mapping[date, int],
    *,
    start: date | None = None,
    end: date | None = None,
    max_days: int = 92,
) -> list[tuple[str, int]]:
    """Counts per day as `bar_chart` points, every day from the first to the last present.

    `start` and `end` (inclusive) fix the range instead, so that a quiet week still shows as
    days of 0; counts outside the range are left out, and a range ending before it starts has
    no points. Days are labelled "29 Okt", with the year ("29 Okt 2025") only when the range
    crosses a new year. A range longer than `max_days` is summed per ISO week (Monday to
    Sunday), labelled by its Monday, "mg 27 Okt" ("minggu", week): 92 bars are as many as fit
    in a phone's width, and a year of days is not. The first and last week may be partial."""
    first = start if start is not None else min(counts, default=end)
    last = end if end is not None else max(counts, default=start)
    if first is None or last is None or last < first:
        return []
    span = (last - first).days + 1
    if span <= max_days:
        days = [first + timedelta(days=i) for i in range(span)]
        with_year = first.year != last.year
        return [(_short_date(day, with_year), counts.get(day, 0)) for day in days]
    weeks: dict[date, int] = defaultdict(int)
    for day, count in counts.items():
        if first <= day <= last:
            weeks[day - timedelta(days=day.weekday())] += count
    monday = first - timedelta(days=first.weekday())
    mondays = [monday + timedelta(weeks=i) for i in range((last - monday).days // 7 + 1)]
    with_year = mondays[0].year != mondays[-1].year
    return [(f"mg {_short_date(m, with_year)}", weeks.get(m, 0)) for m in mondays]


def month_series(
    lines: Iterable[tuple[int, date, int, int]],
) -> tuple[list[str], list[tuple[str, list[int]]]]:
    """What each term costs in each month, for `grouped_bar_chart`: (months, series).

    A line is (term, first month, months, monthly total in Rupiah): invoice lines of that term
    covering that many consecutive months from the first (any day of it stands for the month)
    and costing that much per month, together. The months run without a gap from the first
    month any line covers to the last (a month nothing covers is 0 for every term), labelled
    "Okt 2025"; the series are "Masa 1", "Masa 2", ... in term order, one value per month, 0
    where the term covers nothing. Lines covering no month (months <= 0) add nothing."""
    totals: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for term, first_month, months, monthly_total in lines:
        origin = first_month.year * 12 + first_month.month - 1  # months since year 0
        for offset in range(months):
            totals[term][origin + offset] += monthly_total
    covered = [month for by_month in totals.values() for month in by_month]
    if not covered:
        return [], []
    span = range(min(covered), max(covered) + 1)
    categories = [bulan(f"{month // 12:04d}-{month % 12 + 1:02d}") for month in span]
    series = [
        (f"Masa {term}", [totals[term].get(month, 0) for month in span]) for term in sorted(totals)
    ]
    return categories, series


def _short_date(day: date, with_year: bool) -> str:
    text = tanggal(day)
    return text if with_year else text.rsplit(" ", 1)[0]


@dataclass(frozen=True)
class _YAxis:
    """The value axis: 0 to `top` in steps of `step`, gridlines labelled."""

    top: int
    step: int
    labels: list[str]
    label_width: float

    def height(self, value: int) -> float:
        """A bar's height; a negative value, which no count or amount should be, draws none."""
        return max(value, 0) / self.top * _PLOT_HEIGHT


def nice_scale(largest: int) -> tuple[int, int]:
    """The axis maximum (1, 2 or 5 × 10^k, at least `largest`) and its gridline step.

    4 or 5 gridlines above zero, on whole numbers: 5 steps of 1 up to 5, then 10 in steps of 2,
    20 in steps of 5, 50 in steps of 10, 100 in steps of 20, and so on."""
    if largest <= 5:
        return 5, 1
    power = 10
    while True:
        for multiple, steps in ((1, 5), (2, 4), (5, 5)):
            top = multiple * power
            if top >= largest:
                return top, top // steps
        power *= 10


def _y_axis(largest: int, value_format: Callable[[int], str]) -> _YAxis:
    top, step = nice_scale(largest)
    labels = [value_format(value) for value in range(0, top + 1, step)]
    return _YAxis(top, step, labels, max(_text_width(label) for label in labels))


@dataclass(frozen=True)
class _XAxis:
    """The category axis: where the plot is, each category's band, the labels shown."""

    left: float
    right: float  # the plot's right edge
    band: float
    shown: list[tuple[int, list[str]]]  # (index, lines of its label)
    height: float  # below the plot, for the labels

    def centre(self, index: int) -> float:
        return self.left + (index + 0.5) * self.band


def _x_axis(labels: Sequence[str], y_label_width: float, width: int) -> _XAxis:
    """Place the plot and choose the labels to show: as many as fit without overlapping, at
    most 12, evenly spaced, the first and the last always. A label that does not fit on one
    line is broken at a space onto two when that shows more of them ("Okt" over "2025")."""
    best: _XAxis | None = None
    for most_lines in (1, 2):
        wrapped = [_wrap(label, most_lines) for label in labels]
        label_width = max(_text_width(line) for lines in wrapped for line in lines)
        # The first and last labels are centred on their bars: half of one, less half a band,
        # may stick out of the plot (the band estimated with the plot at its widest).
        y_labels = min(y_label_width, width / 3) + 8
        widest_band = (width - y_labels - 8) / len(labels)
        overhang = min(max(label_width / 2 + 4 - widest_band / 2, 0), width / 4)
        left = max(y_labels, overhang)
        right = width - max(overhang, 8)
        band = (right - left) / len(labels)
        step = max(
            1,
            math.ceil((label_width + _LABEL_GAP) / band),
            math.ceil((len(labels) - 1) / (_MAX_X_LABELS - 1)),
        )
        indices = list(range(0, len(labels), step))
        indices[-1] = len(labels) - 1  # the last label replaces the nearest one before it
        lines = max(len(wrapped[i]) for i in indices)
        axis = _XAxis(left, right, band, [(i, wrapped[i]) for i in indices], 6 + lines * _LINE)
        if best is None or len(axis.shown) > len(best.shown):
            best = axis
    assert best is not None
    return best


def _wrap(label: str, most_lines: int) -> list[str]:
    """`label` on one line, or on two broken at the space nearest its middle."""
    if most_lines == 1 or " " not in label:
        return [label]
    middle = len(label) / 2
    space = min((i for i, char in enumerate(label) if char == " "), key=lambda i: abs(i - middle))
    return [label[:space], label[space + 1 :]]


def _text_width(text: str) -> float:
    return len(text) * _CHAR


def _legend(names: Sequence[str], width: int) -> tuple[list[str], float]:
    """A coloured square and the name of each series, in rows across the top."""
    items = ['<g class="legend">']
    x, row = 8.0, 0
    for s, name in enumerate(names):
        item_width = 12 + 6 + _text_width(name)
        if x > 8 and x + item_width > width - 8:
            x, row = 8.0, row + 1
        top = 4 + row * (_LINE + 6)
        items.append(
            f'<rect x="{_n(x)}" y="{top + 2}" width="12" height="12" '
            f'fill="{COLOURS[s % len(COLOURS)]}"/>'
            f'<text x="{_n(x + 18)}" y="{top + 13}">{escape(name)}</text>'
        )
        x += item_width + 18
    items.append("</g>")
    return items, 4 + (row + 1) * (_LINE + 6)


def _grid(y: _YAxis, x: _XAxis, base: float) -> list[str]:
    """Horizontal gridlines with their values on the left; the zero line darker."""
    out = [f'<g class="grid" stroke="{GRID}">']
    texts = ['<g class="ylabels" text-anchor="end">']
    for i, label in enumerate(y.labels):
        level = base - i * y.step / y.top * _PLOT_HEIGHT
        stroke = f' stroke="{AXIS}"' if i == 0 else ""
        out.append(
            f'<line x1="{_n(x.left)}" x2="{_n(x.right)}" y1="{_n(level)}" '
            f'y2="{_n(level)}"{stroke}/>'
        )
        texts.append(
            f'<text x="{_n(x.left - 6)}" y="{_n(level)}" dy=".35em">{escape(label)}</text>'
        )
    out.append("</g>")
    texts.append("</g>")
    return out + texts


def _x_labels(x: _XAxis, base: float) -> list[str]:
    out = ['<g class="xlabels" text-anchor="middle">']
    for index, lines in x.shown:
        centre = _n(x.centre(index))
        first, *rest = lines
        more = "".join(f'<tspan x="{centre}" dy="{_LINE}">{escape(line)}</tspan>' for line in rest)
        out.append(f'<text x="{centre}" y="{_n(base + _LINE)}">{escape(first)}{more}</text>')
    out.append("</g>")
    return out


def _bar(left: float, base: float, width: float, height: float, tooltip: str) -> str:
    return (
        f'<rect x="{_n(left)}" y="{_n(base - height)}" width="{_n(width)}" '
        f'height="{_n(height)}"><title>{escape(tooltip)}</title></rect>'
    )


def _svg(
    id: str, title: str, description: str, width: int, height: float, body: list[str]
) -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" '
        f'aria-labelledby="{id}-title {id}-desc" viewBox="0 0 {width} {_n(math.ceil(height))}" '
        f'width="100%" preserveAspectRatio="xMinYMin meet" '
        f'font-family="system-ui, sans-serif" font-size="{FONT}" fill="{TEXT}">'
        f'<title id="{id}-title">{escape(title)}</title>'
        f'<desc id="{id}-desc">{escape(description)}</desc>' + "".join(body) + "</svg>"
    )


def _empty(id: str, title: str, description: str, width: int) -> Markup:
    text = f'<text x="{_n(width / 2)}" y="28" text-anchor="middle">Belum ada data</text>'
    return _svg(id, title, description, width, 44, [text])


def _check(id: str, width: int) -> None:
    """Ids go into attributes and references unescaped, so only plain ones are taken."""
    if not _ID.fullmatch(id):
        raise ValueError(f"a chart id is a letter then letters, digits, - or _: {id!r}")
    if width < 240:
        raise ValueError(f"a chart is at least 240 units wide, not {width}")


def _n(value: float) -> str:
    """A coordinate to one decimal, without a trailing ".0": the markup stays small."""
    text = f"{round(value, 1) + 0.0:.1f}"  # + 0.0: never "-0"
    return text[:-2] if text.endswith(".0") else text
