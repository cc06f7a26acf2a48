"""Specification of the HTML backtest report: self-contained, escaped, and drawn by a real browser.

The browser tests open the page in headless Chromium (four launches for the whole file, three shared by
module-scoped fixtures): one dump of the DOM after the page's script ran, one of the page opened with its
equity axis logarithmic, one screenshot, one dump of a run without trades.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from neuraltrade.canonical import format_microseconds
from neuraltrade.errors import ValidationError
from neuraltrade.research.report import MAX_POINTS, ReportData, downsample_indices, render_report
from tests import browser
from tests.browser import read_png, render_dom, screenshot

BARS = 300
HOSTILE = "<script>"
#: (symbol, entry bar, exit bar or None while open, signed size)
TRADES = [
    ("NVDA", 10, 40, 5.0),
    ("NVDA", 60, 90, -3.0),
    ("NVDA", 200, None, 2.0),
    (HOSTILE, 30, 70, 10.0),
    (HOSTILE, 100, 150, -4.0),
    (HOSTILE, 180, 220, -6.0),
]
#: The hostile symbol has no prices before this bar.
HOSTILE_FIRST_BAR = 20
WINDOW_WIDTH = 1200
WHITE = 245
EQUITY_BLUE = (0x1F, 0x4E, 0x9C)
PRICE_GREY = (0x3E, 0x4C, 0x59)
LONG_GREEN = (0x1A, 0x98, 0x50)
SHORT_RED = (0xD7, 0x30, 0x27)


def synthetic_run(bars: int = BARS, *, trades: bool = True) -> ReportData:
    """A daily run over two symbols, one with a hostile name and no prices for its first bars."""
    generator = np.random.default_rng(7)
    start = np.datetime64("2021-01-04T00:00:00", "us").astype(np.int64)
    timestamps = start + np.arange(bars, dtype=np.int64) * 86_400_000_000
    equity = 10_000.0 + np.cumsum(generator.normal(1.0, 40.0, bars))
    drawdown = 100.0 * (1.0 - equity / np.maximum.accumulate(equity))
    nvda = 100.0 * np.exp(np.cumsum(generator.normal(0.0, 0.02, bars)))
    hostile = 50.0 * np.exp(np.cumsum(generator.normal(0.0, 0.02, bars)))
    hostile[:HOSTILE_FIRST_BAR] = np.nan
    prices = {"NVDA": nvda, HOSTILE: hostile}
    times = format_microseconds(timestamps.tolist())
    rows = []
    for symbol, entry, exit_bar, size in TRADES if trades else []:
        entry_price = float(prices[symbol][entry])
        exit_price = None if exit_bar is None else float(prices[symbol][exit_bar])
        pnl = None if exit_price is None else size * (exit_price - entry_price)
        rows.append(
            {
                "symbol": symbol,
                "entry_bar": entry,
                "exit_bar": exit_bar,
                "entry_time": times[entry],
                "exit_time": None if exit_bar is None else times[exit_bar],
                "size": size,
                "entry_price": entry_price,
                "exit_price": exit_price,
                "pnl": pnl,
                "return_pct": None if pnl is None else 100.0 * pnl / abs(size * entry_price),
                "exit_reason": None if exit_bar is None else "signal",
            }
        )
    return ReportData(
        run_id="run-7",
        strategy='sma <b>"cross"</b> & co',
        strategy_id="sma_cross-0123456789ab",
        parameters={"fast": 10, "slow": 30.0, "average": "rolling"},
        cash=10_000.0,
        commission=0.001,
        sizing={"kind": "volatility_target", "annual_volatility": 0.12, "lookback": 20, "max_leverage": 1.0},
        config={
            "fast": 10,
            "slow": 30,
            "note": "</script><script>alert(1)</script>",
            "backtest": {"order_size": 1.0 - 2.220446049250313e-16, "commission": 0.001},
        },
        config_digest="0f" * 32,
        statistics={
            "start": times[0],
            "end": times[-1],
            "equity_final": float(equity[-1]),
            "max_drawdown_pct": float(drawdown.max()),
            "sharpe_ratio": 0.8123,
            "trades": len(rows),
            "win_rate_pct": None,
        },
        timestamps=timestamps,
        equity=equity,
        drawdown_pct=drawdown,
        prices=prices,
        trades=rows,
    )


@dataclass
class Element:
    tag: str
    attributes: dict[str, str]
    children: list[Element] = field(default_factory=list)
    text: str = ""

    def all(self, tag: str | None = None, css: str | None = None) -> list[Element]:
        """This element and its descendants with `tag` and every class of `css` (space separated)."""
        wanted = set((css or "").split())
        found = []
        if (tag is None or self.tag == tag) and wanted <= set(self.attributes.get("class", "").split()):
            found.append(self)
        for child in self.children:
            found.extend(child.all(tag, css))
        return found

    def by_id(self, element_id: str) -> Element:
        matches = [element for element in self.all() if element.attributes.get("id") == element_id]
        assert len(matches) == 1, f"{len(matches)} elements with id {element_id!r}"
        return matches[0]

    def full_text(self) -> str:
        return self.text + "".join(child.full_text() for child in self.children)


class _TreeBuilder(HTMLParser):
    VOID = frozenset({"meta", "link", "br", "hr", "img", "input", "area", "base", "col", "embed", "source", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.open = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {key: value or "" for key, value in attrs})
        self.open[-1].children.append(element)
        if tag not in self.VOID:
            self.open.append(element)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.open) - 1, 0, -1):
            if self.open[depth].tag == tag:
                del self.open[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.open[-1].children.append(Element("#text", {}, text=data))


def parse(page: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(page)
    return builder.root


def path_points(element: Element) -> int:
    """How many points a path's `d` visits (its move-to and line-to commands)."""
    return len(re.findall(r"[ML]", element.attributes["d"]))


@pytest.fixture(scope="module")
def page() -> str:
    return render_report(synthetic_run())


@pytest.fixture(scope="module")
def page_file(page: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def drawn(page_file: Path) -> Element:
    """The report's DOM after Chromium ran its script (one launch)."""
    return parse(render_dom(page_file, width=WINDOW_WIDTH, height=900))


@pytest.fixture(scope="module")
def drawn_log(tmp_path_factory: pytest.TempPathFactory) -> Element:
    """The DOM of a run whose equity grows a hundredfold, opened at ``#log`` (one launch)."""
    run = synthetic_run()
    equity = 10_000.0 * np.power(100.0, np.linspace(0.0, 1.0, BARS))
    growing = replace(run, equity=equity, drawdown_pct=np.zeros(BARS))
    path = tmp_path_factory.mktemp("report-log") / "report.html"
    path.write_text(render_report(growing), encoding="utf-8")
    uri = path.resolve().as_uri() + "#log"
    return parse(browser._launch([f"--window-size={WINDOW_WIDTH},900", "--dump-dom", uri]))


@pytest.fixture(scope="module")
def chart_boxes(drawn: Element) -> dict[str, tuple[int, int, int, int]]:
    """Where each chart's SVG was drawn on the page, in CSS pixels: left, top, width, height."""
    return {
        section.attributes["id"]: tuple(int(number) for number in section.attributes["data-box"].split(","))  # type: ignore[misc]
        for section in drawn.all("section", "chart")
    }


@pytest.fixture(scope="module")
def pixels(page_file: Path, chart_boxes: dict[str, tuple[int, int, int, int]]) -> np.ndarray:
    """A screenshot of the page down to the last chart (one launch)."""
    height = max(top + tall for _, top, _, tall in chart_boxes.values()) + 10
    png = page_file.with_suffix(".png")
    screenshot(page_file, png, WINDOW_WIDTH, height)
    return read_png(png)[:, :, :3]


# The page itself, no browser needed.


def test_the_page_references_no_url_so_it_renders_offline(page: str) -> None:
    assert "http://" not in page
    assert "https://" not in page
    assert not re.search(r"\b(?:src|href)\s*=|url\(|@import", page)
    assert "default-src 'none'" in page


def test_text_from_the_run_cannot_open_an_element(page: str) -> None:
    assert page.count("<script") == 2  # the embedded data and the report's own script
    assert page.count("</script>") == 2
    assert "<b>" not in page
    assert "&lt;b&gt;&quot;cross&quot;&lt;/b&gt; &amp; co" in page
    assert "Price · &lt;script&gt;" in page


def test_the_embedded_data_reads_back_as_the_run(page: str) -> None:
    embedded = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.DOTALL)
    assert embedded is not None
    data = json.loads(embedded.group(1))
    assert [price["symbol"] for price in data["prices"]] == ["NVDA", HOSTILE]
    assert len(data["trades"]) == len(TRADES)
    assert data["bars"] == BARS
    assert len(data["equity"]["value"]) == BARS


def test_statistics_are_labelled_in_words_with_units_and_formatted(page: str) -> None:
    table = re.search(r'<table class="statistics">(.*?)</table>', page, re.DOTALL)
    assert table is not None
    rows = dict(re.findall(r"<th[^>]*>(.*?)</th><td[^>]*>(.*?)</td>", table.group(1)))
    assert rows["Start"] == "2021-01-04"
    assert rows["Sharpe ratio"] == "0.812"
    assert rows["Trades"] == "6"
    assert rows["Win rate [%]"] == "n/a"
    assert re.fullmatch(r"\d{1,2},\d{3}\.\d{2}", rows["Equity final"])
    assert re.fullmatch(r"\d+\.\d{2}", rows["Max drawdown [%]"])


def test_the_header_names_the_strategy_its_parameters_symbols_period_cash_commission_and_sizing(page: str) -> None:
    header = re.search(r"<header>(.*?)</header>", page, re.DOTALL)
    assert header is not None
    rows = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", header.group(1)))
    assert rows["Strategy"] == "sma &lt;b&gt;&quot;cross&quot;&lt;/b&gt; &amp; co (sma_cross-0123456789ab)"
    assert rows["Parameters"] == "fast=10, slow=30, average=rolling"
    assert rows["Symbols"] == "NVDA, &lt;script&gt;"
    assert rows["Period"] == f"2021-01-04 to 2021-10-30 ({BARS} bars, {len(TRADES)} trades)"
    assert rows["Cash"] == "10,000.00"
    assert rows["Commission"] == "0.10% of the notional per fill"
    assert rows["Sizing"] == "volatility target: annual_volatility=0.12, lookback=20, max_leverage=1"


def test_trades_show_whole_units_money_and_percents_for_people(page: str) -> None:
    table = re.search(r'<table class="trades">(.*?)</table>', page, re.DOTALL)
    assert table is not None
    first = re.findall(r"<td[^>]*>(.*?)</td>", table.group(1).split("</tr>")[1])
    number, symbol, side, size, _, entry_price, _, _, pnl, return_pct, reason = first
    assert (number, symbol, side, size, reason) == ("1", "NVDA", "long", "5", "signal")
    assert re.fullmatch(r"\d+\.\d{2}", entry_price)
    assert re.fullmatch(r"-?\d+\.\d{2}", pnl) and re.fullmatch(r"-?\d+\.\d{2}", return_pct)


def test_the_configuration_shows_without_float_noise(page: str) -> None:
    config = re.search(r'<pre class="config">(.*?)</pre>', page, re.DOTALL)
    assert config is not None
    assert "&quot;order_size&quot;: 1\n" in config.group(1)
    assert "0.9999" not in page


def test_a_100k_bar_run_is_decimated_to_a_few_thousand_points_per_chart() -> None:
    run = synthetic_run(100_000)
    page = render_report(run)
    embedded = re.search(r'id="report-data">(.*?)</script>', page, re.DOTALL)
    assert embedded is not None
    data = json.loads(embedded.group(1))
    for series in [data["equity"], data["drawdown"], *data["prices"]]:
        assert len(series["value"]) <= MAX_POINTS
    assert max(data["drawdown"]["value"]) == pytest.approx(-run.drawdown_pct.min(), abs=1e-6)
    assert min(data["drawdown"]["value"]) == pytest.approx(-run.drawdown_pct.max(), rel=1e-5)
    assert len(page.encode()) < 600_000


@settings(max_examples=60, deadline=None)
@given(
    values=hnp.arrays(np.float64, st.integers(0, 400), elements=st.floats(-1e6, 1e6) | st.just(float("nan"))),
    max_points=st.integers(4, 60),
)
def test_decimation_keeps_the_ends_every_extreme_and_at_most_max_points(values: np.ndarray, max_points: int) -> None:
    kept = downsample_indices(values, max_points)
    assert np.all(np.diff(kept) > 0)
    if len(values) <= max_points:
        assert kept.tolist() == list(range(len(values)))
        return
    assert len(kept) <= max_points
    assert kept[0] == 0 and kept[-1] == len(values) - 1
    if np.isfinite(values).any():
        assert np.nanmin(values) in values[kept]
        assert np.nanmax(values) in values[kept]


def test_series_of_another_length_than_the_timeline_are_refused() -> None:
    run = synthetic_run()
    with pytest.raises(ValidationError, match=r"drawdown_pct has shape \(299,\), the run has 300 bars"):
        replace(run, drawdown_pct=run.drawdown_pct[1:])


def test_a_trade_outside_the_run_or_in_a_symbol_without_prices_is_refused() -> None:
    run = synthetic_run()
    late: dict[str, Any] = {**run.trades[0], "exit_bar": BARS}
    with pytest.raises(ValidationError, match="trade 0 spans bars 10 to 300, outside the run's 0 to 299"):
        replace(run, trades=[late])
    unpriced: dict[str, Any] = {**run.trades[0], "symbol": "ORCL"}
    with pytest.raises(ValidationError, match="trade 0 is in 'ORCL', which has no prices"):
        replace(run, trades=[unpriced])


# The page in a browser.


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), (None, pytest.skip.Exception)])
def test_without_chromium_the_browser_tests_fail_in_ci_and_are_skipped_elsewhere(
    monkeypatch: pytest.MonkeyPatch, ci: str | None, outcome: type[BaseException]
) -> None:
    monkeypatch.setattr(browser, "CANDIDATES", ("/nonexistent/chromium",))
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="apt-get install chromium"):
        browser.require_chromium()


def test_the_browser_draws_equity_drawdown_and_a_price_chart_per_symbol(drawn: Element) -> None:
    (body,) = drawn.all("body")
    assert body.attributes["data-rendered"] == f"equity,drawdown,price:NVDA,price:{HOSTILE}"
    error = drawn.by_id("error")
    assert error.full_text() == ""
    assert "hidden" in error.attributes


def test_the_equity_chart_offers_a_log_scale_and_starts_linear(drawn: Element) -> None:
    chart = drawn.by_id("chart-equity")
    (button,) = chart.all("button", "scale")
    assert button.full_text() == "Log scale" and button.attributes["aria-pressed"] == "false"
    assert chart.attributes["data-scale"] == "linear"


def test_on_a_log_scale_equal_ratios_of_equity_are_equal_heights(drawn_log: Element) -> None:
    (body,) = drawn_log.all("body")
    assert body.attributes["data-rendered"] == f"equity,drawdown,price:NVDA,price:{HOSTILE}"
    chart = drawn_log.by_id("chart-equity")
    assert chart.attributes["data-scale"] == "log"
    (button,) = chart.all("button", "scale")
    assert button.attributes["aria-pressed"] == "true"
    ticks = {tick.full_text(): float(tick.attributes["y"]) for tick in chart.all("text", "tick y")}
    assert list(ticks) == ["10,000", "100,000", "1,000,000"]
    lower, upper = ticks["10,000"] - ticks["100,000"], ticks["100,000"] - ticks["1,000,000"]
    assert lower > 50 and upper == pytest.approx(lower, abs=0.2)
    (path,) = chart.all("path", "series equity")
    assert path_points(path) == BARS


def test_the_equity_drawdown_and_buy_and_hold_paths_have_a_point_per_bar(drawn: Element) -> None:
    for chart, css in [("chart-equity", "equity"), ("chart-equity", "buy-hold"), ("chart-drawdown", "drawdown")]:
        (path,) = drawn.by_id(chart).all("path", f"series {css}")
        assert path_points(path) == BARS == int(path.attributes["data-points"]), css
    (area,) = drawn.by_id("chart-drawdown").all("path", "area drawdown")
    assert area.attributes["d"].endswith("Z")


def test_a_symbol_without_early_prices_starts_its_line_at_its_first_price(drawn: Element) -> None:
    (path,) = drawn.by_id("chart-price-1").all("path", "series price")
    assert path_points(path) == BARS - HOSTILE_FIRST_BAR
    assert path.attributes["d"].count("M") == 1


def test_every_trade_has_an_entry_marker_and_every_closed_trade_an_exit_marker(drawn: Element) -> None:
    for index, symbol in enumerate(["NVDA", HOSTILE]):
        chart = drawn.by_id(f"chart-price-{index}")
        mine = [trade for trade in TRADES if trade[0] == symbol]
        assert len(chart.all("path", "marker entry long")) == sum(trade[3] > 0 for trade in mine)
        assert len(chart.all("path", "marker entry short")) == sum(trade[3] < 0 for trade in mine)
        assert len(chart.all("circle", "marker exit")) == sum(trade[2] is not None for trade in mine)
        assert len(chart.all("g", "trade")) == len(mine)


def test_the_charts_have_date_ticks_and_value_ticks(drawn: Element) -> None:
    for section in drawn.all("section", "chart"):
        dates = [tick.full_text() for tick in section.all("text", "tick x")]
        assert len(dates) >= 3, section.attributes["id"]
        assert all(re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", date) for date in dates), dates
        assert len(section.all("text", "tick y")) >= 2


def test_the_hostile_symbol_stays_text_in_the_browser(drawn: Element) -> None:
    assert len(drawn.all("script")) == 2
    headings = [heading.full_text() for heading in drawn.by_id("chart-price-1").all("h2")]
    assert headings[0].startswith(f"Price · {HOSTILE}")
    titles = [title.full_text() for title in drawn.by_id("chart-price-1").all("title")]
    assert titles and all(HOSTILE in title for title in titles)


def test_the_chart_areas_are_not_blank_in_a_screenshot(
    pixels: np.ndarray, chart_boxes: dict[str, tuple[int, int, int, int]]
) -> None:
    def area(chart: str) -> np.ndarray:
        left, top, width, height = chart_boxes[chart]
        return pixels[top : top + height, left : left + width].astype(np.int16)

    def near(region: np.ndarray, colour: tuple[int, int, int]) -> int:
        return int(np.sum(np.abs(region - np.array(colour)).max(axis=2) <= 40))

    def inked(region: np.ndarray) -> float:
        return float(np.mean(region.min(axis=2) < WHITE))

    assert near(area("chart-equity"), EQUITY_BLUE) > 300
    assert inked(area("chart-drawdown")) > 0.2  # the filled area
    for chart in ("chart-price-0", "chart-price-1"):
        assert near(area(chart), PRICE_GREY) > 300, chart
        assert near(area(chart), LONG_GREEN) > 15, chart
        assert near(area(chart), SHORT_RED) > 15, chart


def test_a_run_without_trades_still_draws_every_chart(tmp_path: Path) -> None:
    path = tmp_path / "quiet.html"
    run = synthetic_run(trades=False)
    path.write_text(render_report(replace(run, prices={"NVDA": run.prices["NVDA"]})), encoding="utf-8")
    dom = parse(render_dom(path))
    (body,) = dom.all("body")
    assert body.attributes["data-rendered"] == "equity,drawdown,price:NVDA"
    assert dom.by_id("error").full_text() == ""
    assert dom.all(css="marker") == []
    assert "No trades." in dom.full_text()
