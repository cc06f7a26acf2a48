"""Specification of the learning report's page and of the run report's regret panel: self-contained, escaped,
and drawing what the statistics say (equity lines, regret bars, pattern intervals against the base rate)."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import numpy as np
import pytest

from neuraltrade.formatting import format_ratio
from neuraltrade.research.evaluation import deflated_sharpe_ratio, sharpe_difference_lower_bound, spa_test
from neuraltrade.research.learning_report import (
    MAX_LINE_POINTS,
    Comparison,
    LearningReportData,
    PatternForest,
    RunCurve,
    VariantEvaluation,
    daily_curve,
    daily_returns,
    regret_section,
    render_learning_report,
)
from neuraltrade.research.meta_labels import brier_score, meta_label_confusion
from neuraltrade.research.report import render_report
from tests.domain.research.test_report import synthetic_run

DAY = 86_400_000_000
HOSTILE = "<script>alert(1)</script>"
REGRET: list[dict[str, Any]] = [
    {"alternative": "no_trade", "trades": 12, "mean_regret": 40.0, "total_regret": 480.0, "better_share": 0.5},
    {"alternative": "opposite_side", "trades": 12, "mean_regret": -80.0, "total_regret": -960.0, "better_share": 0.25},
    {"alternative": "half_size", "trades": 12, "mean_regret": 20.0, "total_regret": 240.0, "better_share": 0.5},
]
PATTERNS: list[dict[str, Any]] = [
    {"rank": 1, "side": "long", "wins": 30, "trials": 40, "probability": 0.74, "interval_low": 0.6,
     "interval_high": 0.85},
    {"rank": 2, "side": "short", "wins": 5, "trials": 20, "probability": 0.26, "interval_low": 0.1,
     "interval_high": 0.45},
]  # fmt: skip


class Elements(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data
        self.text.append(data)

    def all(self, tag: str, **match: str) -> list[dict[str, str | None]]:
        return [
            attributes
            for name, attributes in self.tags
            if name == tag and all(attributes.get(key, "") == value for key, value in match.items())
        ]


def parsed(page: str) -> Elements:
    elements = Elements()
    elements.feed(page)
    return elements


def curve(run_id: str, strategy: str, returns: np.ndarray, regret: list[dict[str, Any]] | None = None) -> RunCurve:
    days = np.datetime64("2020-01-02", "us").astype(np.int64) + np.arange(len(returns) + 1, dtype=np.int64) * DAY
    equity = 10_000.0 * np.cumprod(np.concatenate([[1.0], 1.0 + returns]))
    return RunCurve(run_id=run_id, strategy=strategy, strategy_id=f"{strategy}-abc", days=days, equity=equity,
                    regret=regret or [])  # fmt: skip


@pytest.fixture(scope="module")
def report() -> LearningReportData:
    generator = np.random.default_rng(5)
    base_returns = generator.normal(0.0004, 0.01, 2_000)
    # The gate sits out a third of the days: flat, where the base lost on average.
    gated_returns = np.where(generator.random(2_000) < 0.3, 0.0, base_returns)
    base = curve("base-run", HOSTILE, base_returns, REGRET)
    gated = curve("gated-run", f"gated:{HOSTILE}", gated_returns, REGRET[:2])
    success = generator.random(60) < 0.5
    vetoed = generator.random(60) < 0.3
    probabilities = np.clip(0.5 + 0.2 * (success - 0.5) + generator.normal(0, 0.1, 60), 0, 1)
    variant = VariantEvaluation(
        run=gated,
        difference=sharpe_difference_lower_bound(gated_returns, base_returns, reps=200),
        deflated=deflated_sharpe_ratio(gated_returns, generator.normal(0.0, 0.03, 30)),
        confusion=meta_label_confusion(success, vetoed),
        brier=brier_score(probabilities[~vetoed], success[~vetoed]),
        notes=["12 of the ungated run's 60 trades are judged"],
    )
    comparison = Comparison(
        base_strategy=HOSTILE,
        symbols=["NVDA"],
        data_digest="ab" * 32,
        base=base,
        variants=[variant],
        spa=spa_test(base_returns, gated_returns[:, None], reps=200),
    )
    forest = PatternForest(
        strategy=f"{HOSTILE}-abc", as_of=datetime(2024, 1, 1, tzinfo=UTC), base_rate=0.5, episodes=60,
        patterns=PATTERNS,
    )  # fmt: skip
    return LearningReportData(
        database="sqlite:///t.db",
        generated_at=datetime(2026, 1, 2, tzinfo=UTC),
        comparisons=[comparison],
        patterns=[forest],
        runs=41,
        registry_trials=9,
    )


@pytest.fixture(scope="module")
def page(report: LearningReportData) -> str:
    return render_learning_report(report)


def test_the_daily_curve_keeps_each_days_last_bar_and_daily_bars_as_they_are() -> None:
    hours = np.array([0, 6, 23, 24, 30, 72], dtype=np.int64) * 3_600_000_000
    days, equity = daily_curve(hours, np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    assert days.tolist() == [hours[2], hours[4], hours[5]]
    assert equity.tolist() == [3.0, 5.0, 6.0]
    daily = np.arange(5, dtype=np.int64) * DAY
    assert daily_curve(daily, np.arange(5.0))[0].tolist() == daily.tolist()


def test_daily_returns_are_simple_returns_and_zero_after_a_zero_equity() -> None:
    assert daily_returns(np.array([100.0, 110.0, 99.0])) == pytest.approx([0.1, -0.1])
    assert daily_returns(np.array([0.0, 5.0])).tolist() == [0.0]


def test_the_page_runs_no_script_loads_nothing_and_admits_only_its_own_style(page: str) -> None:
    elements = parsed(page)
    assert not elements.all("script")
    assert not re.search(r"\b(src|href)=", page)
    [policy] = [meta["content"] or "" for meta in elements.all("meta") if meta.get("http-equiv")]
    assert "default-src 'none'" in policy and "script-src" not in policy
    digest = base64.b64encode(hashlib.sha256(elements.style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in policy


def test_text_from_the_database_cannot_open_an_element(page: str) -> None:
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_statistics_table_shows_the_sharpe_difference_its_lower_bound_spa_dsr_and_brier(
    page: str, report: LearningReportData
) -> None:
    [comparison] = report.comparisons
    [variant] = comparison.variants
    assert variant.difference is not None and variant.deflated is not None and comparison.spa is not None
    text = " ".join(parsed(page).text)
    # Sharpe ratios as every table shows ratios (`format_ratio`).
    for key in ("lower_bound", "estimate", "treated_sharpe", "base_sharpe"):
        assert format_ratio(variant.difference[key]) in text
    assert f"p = {comparison.spa['consistent']:,.3f}" in text
    assert f"{variant.deflated['dsr']:,.3f}" in text
    assert "every stored backtest run (41) and every trial of the registry (9)" in text
    assert "12 of the ungated run's 60 trades are judged" in text


def test_the_confusion_matrix_shows_its_four_cells_lift_and_wilson_intervals(
    page: str, report: LearningReportData
) -> None:
    confusion = report.comparisons[0].variants[0].confusion
    assert confusion is not None
    cells = re.search(r'<table class="confusion">(.*?)</table>', page, re.S)
    assert cells is not None
    numbers = [int(value) for value in re.findall(r"<td>(\d+)</td>", cells.group(1))]
    assert numbers == [
        confusion["winners_kept"],
        confusion["winners_vetoed"],
        confusion["losers_kept"],
        confusion["losers_vetoed"],
    ]
    low, high = confusion["precision_interval"]
    assert f"lift {confusion['lift']:,.3f}" in page and f"[{low:,.3f}, {high:,.3f}]" in page


def test_the_equity_plot_draws_the_base_and_each_gated_run_decimated(page: str, report: LearningReportData) -> None:
    lines = parsed(page).all("polyline")
    assert [line["data-label"] for line in lines] == [f"ungated {HOSTILE}-abc", f"gated:{HOSTILE}-abc"]
    for line in lines:
        assert 2 < int(line["data-points"] or 0) <= MAX_LINE_POINTS
        assert len((line["points"] or "").split()) == int(line["data-points"] or 0)
    # The higher final equity ends higher on the page (smaller y).
    ends = [float((line["points"] or "").split()[-1].split(",")[1]) for line in lines]
    finals = [report.comparisons[0].base.equity[-1], report.comparisons[0].variants[0].run.equity[-1]]
    assert (ends[0] < ends[1]) == (finals[0] > finals[1])


def test_regret_bars_have_one_bar_per_alternative_sized_by_the_mean_regret_red_when_the_alternative_was_better() -> (
    None
):
    bars = parsed(regret_section(REGRET)).all("rect")
    assert [bar["data-alternative"] for bar in bars] == [row["alternative"] for row in REGRET]
    widths = {bar["data-alternative"]: float(bar["width"] or 0) for bar in bars}
    assert widths["opposite_side"] == pytest.approx(2 * widths["no_trade"], rel=0.02)
    assert widths["no_trade"] == pytest.approx(2 * widths["half_size"], rel=0.02)
    colours = {bar["data-alternative"]: bar["fill"] for bar in bars}
    assert colours["no_trade"] == colours["half_size"] != colours["opposite_side"]


def test_the_learning_page_has_a_regret_panel_per_run_with_counterfactuals(page: str) -> None:
    assert page.count('<section class="table regret">') == 2
    assert len(parsed(page).all("rect", **{"data-alternative": "no_trade"})) == 2


def test_the_forest_plot_draws_each_patterns_interval_around_its_probability_and_the_base_rate(page: str) -> None:
    elements = parsed(page)
    intervals = elements.all("line", **{"class": "interval"})
    [base_rate] = elements.all("line", **{"class": "base-rate"})
    assert len(intervals) == len(PATTERNS)
    for interval, pattern in zip(intervals, PATTERNS, strict=True):
        left, right = float(interval["x1"] or 0), float(interval["x2"] or 0)
        assert left < right
        # The scale is linear in probability: the base rate 0.5 sits where 0.5 does on every interval.
        scale = (right - left) / (pattern["interval_high"] - pattern["interval_low"])
        assert float(base_rate["x1"] or 0) == pytest.approx(left + (0.5 - pattern["interval_low"]) * scale, abs=0.2)
    # An interval above the base rate is green, one below red.
    assert intervals[0]["stroke"] != intervals[1]["stroke"]
    assert "#1 long 30/40" in page


def test_an_empty_database_gives_a_page_that_says_so() -> None:
    empty = LearningReportData(
        database="sqlite:///e.db",
        generated_at=datetime(2026, 1, 2, tzinfo=UTC),
        comparisons=[],
        patterns=[],
        runs=0,
        registry_trials=0,
    )
    page = render_learning_report(empty)
    assert "No comparison yet" in page and "No distillation stored yet" in page


def test_the_run_report_shows_a_regret_panel_only_when_counterfactuals_exist() -> None:
    from dataclasses import replace

    plain = synthetic_run()
    assert "regret" not in render_report(plain).lower()
    page = render_report(replace(plain, regret=REGRET))
    section = re.search(r'<section class="table regret">.*?</section>', page, re.S)
    assert section is not None
    assert [bar["data-alternative"] for bar in parsed(section.group(0)).all("rect")] == [
        row["alternative"] for row in REGRET
    ]
    assert "opposite_side" in section.group(0) and "-960.00" in section.group(0)
