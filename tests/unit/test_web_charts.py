"""The staff pages' inline SVG bar charts and the series they draw: well-formed, accessible
(role, title, description, a tooltip per bar, contrast, text size), escaped, small, on a round
axis, with thinned labels; days filled in and summed per week, term costs spread over months."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import date, timedelta
from itertools import pairwise

import pytest
from markupsafe import Markup

from lindung_registration.web.charts import (
    COLOURS,
    GRID,
    TEXT,
    bar_chart,
    daily_points,
    grouped_bar_chart,
    month_series,
    nice_scale,
)
from lindung_registration.web.format import rupiah

SVG = "{http://www.w3.org/2000/svg}"


def parse(chart: Markup) -> ET.Element:
    assert isinstance(chart, Markup)
    return ET.fromstring(str(chart))  # fails unless well-formed


def group(root: ET.Element, name: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == name]


def bars(root: ET.Element) -> list[ET.Element]:
    return [rect for g in group(root, "bars") for rect in g.iter(f"{SVG}rect")]


def tooltip(rect: ET.Element) -> str:
    title = rect.find(f"{SVG}title")
    assert title is not None and title.text is not None
    return title.text


def texts(root: ET.Element, name: str) -> list[str]:
    return ["".join(t.itertext()) for g in group(root, name) for t in g.iter(f"{SVG}text")]


def x_labels(root: ET.Element) -> list[str]:
    return [" ".join(t.itertext()) for g in group(root, "xlabels") for t in g.iter(f"{SVG}text")]


def height(rect: ET.Element) -> float:
    return float(rect.get("height", "nan"))


def luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_with_white(colour: str) -> float:
    return 1.05 / (luminance(colour) + 0.05)


POINTS = [("1 Okt", 12), ("2 Okt", 0), ("3 Okt", 37), ("4 Okt", 5)]


def test_a_bar_chart_is_an_accessible_image_named_and_described() -> None:
    root = parse(bar_chart(POINTS, id="harian", title="Pendaftaran", description="Per hari"))
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "harian-title harian-desc"
    assert root.get("width") == "100%"
    assert root.get("preserveAspectRatio") == "xMinYMin meet"
    assert (root.get("viewBox") or "").startswith("0 0 640 ")
    title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
    assert title is not None and (title.get("id"), title.text) == ("harian-title", "Pendaftaran")
    assert desc is not None and (desc.get("id"), desc.text) == ("harian-desc", "Per hari")
    assert list(root)[:2] == [title, desc]  # first, as screen readers expect
    assert root.get("fill") == TEXT
    sizes = [float(e.get("font-size", "")) for e in root.iter() if e.get("font-size")]
    assert sizes and min(sizes) >= 12


def test_the_colours_have_enough_contrast_against_white() -> None:
    assert contrast_with_white(TEXT) >= 4.5
    for colour in COLOURS:
        assert contrast_with_white(colour) >= 3, colour
    assert contrast_with_white(GRID) < 3  # gridlines stay quiet: they are not the data


def test_each_bar_has_a_title_with_its_label_and_value_in_order() -> None:
    root = parse(bar_chart(POINTS, id="c", title="t", description="d"))
    rects = bars(root)
    assert [tooltip(r) for r in rects] == ["1 Okt: 12", "2 Okt: 0", "3 Okt: 37", "4 Okt: 5"]
    xs = [float(r.get("x", "nan")) for r in rects]
    assert xs == sorted(xs) and len(set(xs)) == 4
    assert all(r.get("fill") is None for r in rects)  # the colour is the group's
    assert {g.get("fill") for g in group(root, "bars")} == {COLOURS[0]}


def test_bar_heights_are_proportional_to_the_values_from_zero() -> None:
    root = parse(bar_chart(POINTS, id="c", title="t", description="d"))
    h12, h0, h37, h5 = (height(r) for r in bars(root))
    assert h0 == 0
    assert h37 / h12 == pytest.approx(37 / 12, rel=0.02)
    assert h5 / h12 == pytest.approx(5 / 12, rel=0.03)
    # All bars stand on the zero line.
    bottoms = {round(float(r.get("y", "nan")) + height(r), 1) for r in bars(root)}
    assert len(bottoms) == 1


def test_the_y_axis_runs_to_a_round_maximum_labelled_with_the_value_format() -> None:
    root = parse(bar_chart(POINTS, id="c", title="t", description="d"))
    assert texts(root, "ylabels") == ["0", "10", "20", "30", "40", "50"]
    money = [("Okt 2025", 94_080_000), ("Nov 2025", 282_240_000)]
    root = parse(bar_chart(money, id="c", title="t", description="d", value_format=rupiah))
    assert texts(root, "ylabels") == [rupiah(n * 100_000_000) for n in range(6)]
    assert [tooltip(r) for r in bars(root)] == [
        "Okt 2025: Rp 94.080.000",
        "Nov 2025: Rp 282.240.000",
    ]
    # The tallest bar reaches 282/500 of the way to the top gridline.
    lines = next(iter(group(root, "grid"))).findall(f"{SVG}line")
    levels = sorted(float(line.get("y1", "nan")) for line in lines)
    assert len(levels) == 6
    plot = levels[-1] - levels[0]
    assert height(bars(root)[1]) / plot == pytest.approx(282.24 / 500, abs=0.002)


@pytest.mark.parametrize(
    ("largest", "scale"),
    [
        (0, (5, 1)),
        (1, (5, 1)),
        (5, (5, 1)),
        (6, (10, 2)),
        (10, (10, 2)),
        (11, (20, 5)),
        (20, (20, 5)),
        (21, (50, 10)),
        (37, (50, 10)),
        (50, (50, 10)),
        (51, (100, 20)),
        (101, (200, 50)),
        (5_600, (10_000, 2_000)),
        (282_240_000, (500_000_000, 100_000_000)),
        (-3, (5, 1)),
    ],
)
def test_nice_scale_examples(largest: int, scale: tuple[int, int]) -> None:
    assert nice_scale(largest) == scale


def test_nice_scale_is_the_least_round_maximum_with_four_or_five_whole_steps() -> None:
    nice = sorted({m * 10**k for m in (1, 2, 5) for k in range(12)})
    for largest in [*range(6, 3_000), 10**9, 10**9 + 1, 123_456_789]:
        top, step = nice_scale(largest)
        assert top in nice and top >= largest
        assert nice[nice.index(top) - 1] < largest  # no smaller round maximum would do
        assert top % step == 0 and top // step in (4, 5)


def test_x_labels_are_thinned_to_at_most_twelve_keeping_the_first_and_last() -> None:
    start = date(2025, 10, 1)
    points = daily_points({start + timedelta(days=i): i for i in range(92)})
    root = parse(bar_chart(points, id="c", title="t", description="d"))
    assert len(bars(root)) == 92
    shown = x_labels(root)
    assert 6 <= len(shown) <= 12
    assert shown[0] == "1 Okt" and shown[-1] == "31 Des"
    labels = [label for label, _ in points]
    indices = [labels.index(label) for label in shown]
    gaps = {b - a for a, b in pairwise(indices)}
    assert len(gaps - {max(gaps)}) <= 1 and min(gaps) > 1  # even steps, the last may be longer
    # Labels that fit are all shown.
    root = parse(bar_chart(POINTS, id="c", title="t", description="d"))
    assert x_labels(root) == ["1 Okt", "2 Okt", "3 Okt", "4 Okt"]


def test_shown_x_labels_do_not_overlap() -> None:
    start = date(2025, 10, 1)
    for days in (7, 14, 31, 60, 92):
        points = daily_points({start: 1}, start=start, end=start + timedelta(days=days - 1))
        root = parse(bar_chart(points, id="c", title="t", description="d"))
        # (left, right) of each label, taking a glyph as 0.55 em wide (wider than digits and
        # most lower-case letters of common sans-serif fonts)
        spans = [
            (float(t.get("x", "nan")) - w / 2, float(t.get("x", "nan")) + w / 2)
            for g in group(root, "xlabels")
            for t in g
            for w in [0.55 * 13 * len("".join(t.itertext()))]
        ]
        assert spans[0][0] >= 0 and spans[-1][1] <= 640, days  # inside the image
        assert all(a[1] + 4 <= b[0] for a, b in pairwise(spans)), days


def test_every_text_is_escaped() -> None:
    hostile = "<script>alert('x')</script>"
    chart = bar_chart(
        [(hostile, 1), ("A & B", 2)], id="c", title=f"T {hostile}", description='"d" & <e>'
    )
    assert "<script>" not in chart
    assert "&lt;script&gt;" in chart
    root = parse(chart)
    assert root.find(f"{SVG}title") is not None
    assert root.findtext(f"{SVG}title") == f"T {hostile}"
    assert root.findtext(f"{SVG}desc") == '"d" & <e>'
    assert [tooltip(r) for r in bars(root)] == [f"{hostile}: 1", "A & B: 2"]
    assert x_labels(root) == [hostile, "A & B"]
    grouped = grouped_bar_chart(
        [hostile], [(f"<b>{hostile}</b>", [1])], id="g", title="t", description="d"
    )
    assert "<script>" not in grouped and "<b>" not in grouped
    assert texts(parse(grouped), "legend") == [f"<b>{hostile}</b>"]


def test_ids_must_be_plain_and_make_each_chart_unique() -> None:
    for wrong in ["", "1a", 'a" onload="x', "a b", "a<"]:
        with pytest.raises(ValueError):
            bar_chart(POINTS, id=wrong, title="t", description="d")
    one = parse(bar_chart(POINTS, id="satu", title="t", description="d"))
    two = parse(bar_chart(POINTS, id="dua", title="t", description="d"))
    ids = [e.get("id") for root in (one, two) for e in root.iter() if e.get("id")]
    assert ids == ["satu-title", "satu-desc", "dua-title", "dua-desc"]


def test_no_points_draw_a_small_chart_saying_there_is_no_data() -> None:
    for chart in (
        bar_chart([], id="kosong", title="Pendaftaran", description="Per hari"),
        grouped_bar_chart([], [], id="kosong", title="Pendaftaran", description="Per hari"),
        grouped_bar_chart(["Okt 2025"], [], id="kosong", title="Pendaftaran", description="d"),
    ):
        root = parse(chart)
        assert root.get("role") == "img"
        assert root.get("aria-labelledby") == "kosong-title kosong-desc"
        assert root.findtext(f"{SVG}title") == "Pendaftaran"
        assert "Belum ada data" in "".join(root.itertext())
        assert not bars(root)
        assert len(chart) < 1_000


def test_a_quarter_of_daily_bars_stays_small() -> None:
    start = date(2025, 10, 1)
    points = daily_points({start + timedelta(days=i): 1_000 + i * 997 for i in range(92)})
    chart = bar_chart(points, id="c", title="t", description="d", value_format=rupiah)
    assert len(chart.encode()) < 25_000
    months = [f"Bln {i}" for i in range(24)]
    series = [(f"Masa {t}", [t * 1_000_000 * i for i in range(24)]) for t in range(1, 5)]
    grouped = grouped_bar_chart(months, series, id="g", title="t", description="d")
    assert len(grouped.encode()) < 25_000


def test_grouped_bars_sit_side_by_side_per_category_with_a_legend() -> None:
    categories = ["Okt 2025", "Nov 2025", "Des 2025"]
    series = [("Masa 1", [10, 20, 0]), ("Masa 2", [0, 5, 40])]
    root = parse(
        grouped_bar_chart(
            categories, series, id="biaya", title="Biaya", description="d", value_format=rupiah
        )
    )
    assert root.get("aria-labelledby") == "biaya-title biaya-desc"
    assert texts(root, "legend") == ["Masa 1", "Masa 2"]
    legend = group(root, "legend")[0].findall(f"{SVG}rect")
    assert [r.get("fill") for r in legend] == list(COLOURS[:2])
    groups = group(root, "bars")
    assert [g.get("fill") for g in groups] == list(COLOURS[:2])
    first, second = ([tooltip(r) for r in g.findall(f"{SVG}rect")] for g in groups)
    assert first == ["Okt 2025, Masa 1: Rp 10", "Nov 2025, Masa 1: Rp 20", "Des 2025, Masa 1: Rp 0"]
    assert second[2] == "Des 2025, Masa 2: Rp 40"
    # Per category: Masa 1 then Masa 2, touching or apart but never overlapping, and the
    # categories in order.
    spans = [
        [
            (float(r.get("x", "nan")), float(r.get("x", "nan")) + float(r.get("width", "nan")))
            for r in g.findall(f"{SVG}rect")
        ]
        for g in groups
    ]
    edges = [edge for i in range(3) for s in spans for edge in s[i]]
    assert edges == sorted(edges)
    assert texts(root, "ylabels")[-1] == "Rp 50"
    assert height(groups[1][2]) / height(groups[0][1]) == pytest.approx(2, rel=0.02)
    assert x_labels(root) == categories


def test_grouped_series_need_one_value_per_category() -> None:
    with pytest.raises(ValueError, match="Masa 2"):
        grouped_bar_chart(
            ["Okt", "Nov"], [("Masa 1", [1, 2]), ("Masa 2", [1])], id="g", title="t", description=""
        )


def test_daily_points_fill_missing_days_with_zero_between_the_first_and_last() -> None:
    counts = {date(2025, 10, 31): 4, date(2025, 10, 29): 2, date(2025, 11, 2): 1}
    assert daily_points(counts) == [
        ("29 Okt", 2),
        ("30 Okt", 0),
        ("31 Okt", 4),
        ("1 Nov", 0),
        ("2 Nov", 1),
    ]
    assert daily_points({}) == []
    assert daily_points({date(2025, 10, 29): 3}) == [("29 Okt", 3)]


def test_daily_points_over_a_given_range_leave_out_days_outside_it() -> None:
    counts = {date(2025, 10, 28): 9, date(2025, 10, 30): 4, date(2025, 11, 5): 7}
    points = daily_points(counts, start=date(2025, 10, 29), end=date(2025, 11, 1))
    assert points == [("29 Okt", 0), ("30 Okt", 4), ("31 Okt", 0), ("1 Nov", 0)]
    assert daily_points({}, start=date(2025, 10, 29), end=date(2025, 10, 30)) == [
        ("29 Okt", 0),
        ("30 Okt", 0),
    ]
    assert daily_points(counts, start=date(2025, 11, 4)) == [("4 Nov", 0), ("5 Nov", 7)]
    assert daily_points(counts, end=date(2025, 10, 29)) == [("28 Okt", 9), ("29 Okt", 0)]
    assert daily_points(counts, start=date(2025, 12, 1), end=date(2025, 11, 1)) == []


def test_daily_points_name_the_year_only_when_the_range_crosses_one() -> None:
    counts = {date(2025, 12, 31): 1, date(2026, 1, 1): 2}
    assert daily_points(counts) == [("31 Des 2025", 1), ("1 Jan 2026", 2)]


def test_a_range_longer_than_max_days_is_summed_per_iso_week_labelled_by_monday() -> None:
    # Wednesday 29 Oct 2025 to Tuesday 11 Nov 2025: 14 days over three ISO weeks.
    counts = {
        date(2025, 10, 29): 1,  # week of Monday 27 Oct
        date(2025, 11, 2): 2,  # Sunday: still the week of 27 Oct
        date(2025, 11, 3): 4,  # Monday: week of 3 Nov
        date(2025, 11, 9): 8,  # Sunday, week of 3 Nov
        date(2025, 11, 11): 16,  # week of 10 Nov
    }
    daily = daily_points(counts, max_days=14)  # 14 days fit: still daily
    assert (len(daily), daily[0], daily[-1]) == (14, ("29 Okt", 1), ("11 Nov", 16))
    assert daily_points(counts, max_days=13) == [
        ("mg 27 Okt", 3),
        ("mg 3 Nov", 12),
        ("mg 10 Nov", 16),
    ]
    # Days outside the range do not count towards their partial week.
    weekly = daily_points({**counts, date(2025, 10, 27): 100}, start=date(2025, 10, 29), max_days=7)
    assert weekly[0] == ("mg 27 Okt", 3)
    # A quiet week is there with 0; 92 days stay daily by default, 93 become weeks.
    quiet = {date(2025, 10, 1): 1, date(2025, 12, 31): 1}
    assert len(daily_points(quiet)) == 92
    weeks = daily_points({**quiet, date(2026, 1, 1): 1})
    assert weeks[0] == ("mg 29 Sep", 1) and weeks[-1] == ("mg 29 Des", 2)  # Mondays of 2025
    assert len(weeks) == 14 and sum(n for _, n in weeks) == 3
    assert weeks[5] == ("mg 3 Nov", 0)
    # The year is named when the Mondays are in two years.
    across = daily_points({date(2025, 12, 1): 1, date(2026, 3, 31): 5})
    assert across[0] == ("mg 1 Des 2025", 1) and across[-1] == ("mg 30 Mar 2026", 5)


def test_month_series_spread_each_term_over_the_months_its_lines_cover() -> None:
    lines = [
        (1, date(2025, 10, 1), 3, 94_080_000),  # term 1: Oct-Dec 2025
        (1, date(2025, 11, 1), 1, 1_000),  # a late registration's line in Nov only
        (2, date(2026, 1, 1), 3, 90_000_000),  # term 2: Jan-Mar 2026
        (2, date(2026, 2, 1), 2, 500),  # joined in Feb
    ]
    categories, series = month_series(lines)
    assert categories == ["Okt 2025", "Nov 2025", "Des 2025", "Jan 2026", "Feb 2026", "Mar 2026"]
    assert series == [
        ("Masa 1", [94_080_000, 94_081_000, 94_080_000, 0, 0, 0]),
        ("Masa 2", [0, 0, 0, 90_000_000, 90_000_500, 90_000_500]),
    ]
    # Each term's yearly cost is kept: the months times the monthly totals.
    assert sum(series[0][1]) == 3 * 94_080_000 + 1_000


def test_month_series_span_every_month_in_order_with_gaps_as_zero() -> None:
    lines = [
        (3, date(2026, 11, 1), 3, 30),  # Nov 2026 - Jan 2027, across the year end
        (1, date(2026, 1, 15), 2, 10),  # any day stands for its month: Jan - Feb 2026
        (2, date(2026, 6, 1), 1, 20),
        (2, date(2026, 7, 1), 0, 999),  # covers nothing
    ]
    categories, series = month_series(lines)
    assert categories[0] == "Jan 2026" and categories[-1] == "Jan 2027"
    assert len(categories) == 13
    assert [name for name, _ in series] == ["Masa 1", "Masa 2", "Masa 3"]
    by_name = dict(series)
    assert by_name["Masa 1"] == [10, 10] + [0] * 11
    assert by_name["Masa 2"] == [0] * 5 + [20] + [0] * 7
    assert by_name["Masa 3"] == [0] * 10 + [30, 30, 30]
    assert all(len(values) == len(categories) for _, values in series)
    assert month_series([]) == ([], [])
    assert month_series([(1, date(2026, 1, 1), 0, 5)]) == ([], [])


def test_month_series_feed_a_grouped_chart() -> None:
    categories, series = month_series([(1, date(2025, 10, 1), 3, 5), (2, date(2026, 1, 1), 3, 7)])
    root = parse(grouped_bar_chart(categories, series, id="g", title="t", description="d"))
    assert len(bars(root)) == 6 * 2
    assert texts(root, "legend") == ["Masa 1", "Masa 2"]
    assert re.fullmatch(r"Jan 2026, Masa 2: 7", tooltip(group(root, "bars")[1][3]))
