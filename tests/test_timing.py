"""Timing statistics computed by hand, and the checks on warm-up/run counts."""
from __future__ import annotations

import math

import pytest

from fcn_deploy.timing import (STAT_FIELDS, check_counts, summarize, time_interleaved_calls,
                                time_runs)
from fcn_deploy.errors import FCNError


def test_summarize_matches_hand_computed_values():
    # seconds -> ms: 1000, 2000, 3000, 4000
    s = summarize([0.001, 0.002, 0.004, 0.003], items=2)
    assert (s.n, s.min, s.max, s.mean, s.median) == (4, 1.0, 4.0, 2.5, 2.5)
    # linear interpolation between order statistics: rank 0.9 * 3 = 2.7 -> 3 + 0.7 * 1
    assert s.p90 == pytest.approx(3.7)
    assert s.p99 == pytest.approx(3.97)
    std = math.sqrt(((1.5 ** 2) * 2 + (0.5 ** 2) * 2) / 3)  # sample std, ddof=1
    assert s.std == pytest.approx(std)
    assert s.cv == pytest.approx(std / 2.5)
    assert s.throughput == pytest.approx(2 / 2.5e-3)  # 2 items per 2.5 ms


def test_single_sample_has_zero_spread():
    s = summarize([0.010])
    assert s.min == s.median == s.mean == s.p90 == s.p99 == s.max == pytest.approx(10.0)
    assert s.std == 0.0 and s.cv == 0.0 and s.throughput == pytest.approx(100.0)


def test_flat_names_every_statistic_with_units():
    flat = summarize([0.001, 0.003]).flat("e2e")
    for name in STAT_FIELDS:
        key = "e2e_cv" if name == "cv" else f"e2e_{name}_ms"
        assert key in flat
    assert flat["e2e_n"] == 2 and flat["e2e_throughput_ips"] == pytest.approx(500.0)


def test_errors_name_the_option():
    with pytest.raises(FCNError, match="no timed runs"):
        summarize([])
    with pytest.raises(FCNError, match="--runs must be an integer >= 1"):
        check_counts(warmup=0, runs=0)
    with pytest.raises(FCNError, match="--warmup must be an integer >= 0"):
        check_counts(warmup=-1, runs=3)
    with pytest.raises(ValueError, match="finite"):
        summarize([0.1, float("nan")])


def test_time_runs_warms_up_then_times_each_run():
    calls = []
    seen = []
    samples = time_runs(lambda: calls.append(1), warmup=2, runs=3,
                        progress=lambda i, s: seen.append(i))
    assert len(calls) == 5 and len(samples) == 3 and seen == [0, 1, 2]
    assert all(s >= 0 for s in samples)


def test_time_interleaved_calls_warms_each_then_alternates():
    order: list[str] = []
    ticks: list[int] = []

    def busy():  # burns a little CPU so process time is > 0 on any machine
        order.append("b")
        sum(i * i for i in range(20000))

    timed = time_interleaved_calls({"a": lambda: order.append("a"), "b": busy}, warmup=2, runs=3,
                                   on_run=lambda: ticks.append(1))
    assert order == ["a", "a", "b", "b"] + ["a", "b"] * 3
    assert [len(timed[k][0]) for k in ("a", "b")] == [3, 3] and len(ticks) == 6
    assert all(t >= 0 for k in ("a", "b") for t in timed[k][0]) and timed["b"][1] >= 0
    with pytest.raises(FCNError, match="--runs must be an integer >= 1, got 0"):
        time_interleaved_calls({"a": lambda: None}, warmup=0, runs=0)
