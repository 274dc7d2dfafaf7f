"""Budgets and NetAdapt options: parsing, limits and one-line errors."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwaware.errors import HwawareError
from hwaware.netadapt import Budget, NetAdaptConfig, parse_budgets


@pytest.mark.parametrize(
    "text, resource, value, relative",
    [
        ("latency=0.5", "latency", 0.5, True),
        ("energy=60%", "energy", 0.6, True),
        ("energy = 60 %", "energy", 0.6, True),
        ("macs=abs:2.5e6", "macs", 2.5e6, False),
        ("latency=abs:0.8ms", "latency", 0.8, False),
        ("weights=1", "weights", 1.0, True),
        ("measured=.25", "measured", 0.25, True),
    ],
)
def test_parse_forms(text: str, resource: str, value: float, relative: bool) -> None:
    b = Budget.parse(text)
    assert (b.resource, b.relative) == (resource, relative)
    assert b.value == pytest.approx(value, rel=1e-15)


def test_limit_relative_and_absolute() -> None:
    assert Budget("latency", 0.5).limit(3.0) == 1.5
    assert Budget("macs", 2e6, relative=False).limit(9e9) == 2e6


@settings(max_examples=50, deadline=None)
@given(st.floats(min_value=1e-6, max_value=1.0), st.booleans())
def test_text_round_trip(value: float, relative: bool) -> None:
    b = Budget("energy", value if relative else value * 1e7, relative)
    assert Budget.parse(b.to_text()) == b
    assert Budget.from_dict(b.to_dict()) == b


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("latncy=0.5", "did you mean 'latency'"),
        ("latency=2", "abs:2"),
        ("latency=0", "fraction in (0, 1]"),
        ("latency=150%", "fraction in (0, 1]"),
        ("macs=abs:-3", "must be positive"),
        ("energy=lots", "not a number"),
        ("energy=abs:x", "not a number"),
        ("energy", "expected NAME=VALUE"),
    ],
)
def test_bad_budgets_are_one_line_errors(text: str, fragment: str) -> None:
    with pytest.raises(HwawareError) as exc:
        Budget.parse(text)
    assert fragment in str(exc.value)
    assert "\n" not in str(exc.value)


def test_parse_budgets_accepts_mixed_forms_and_rejects_duplicates() -> None:
    got = parse_budgets({"latency": 0.5, "energy": "60%"})
    assert got == (Budget("latency", 0.5), Budget("energy", 0.6))
    assert parse_budgets(["macs=0.3", Budget("weights", 0.4)]) == (Budget("macs", 0.3), Budget("weights", 0.4))
    assert parse_budgets("latency=0.5") == (Budget("latency", 0.5),)
    with pytest.raises(HwawareError, match="two budgets for 'latency'"):
        parse_budgets(["latency=0.5", "latency=40%"])
    with pytest.raises(HwawareError, match="no budget"):
        parse_budgets([])


def test_config_defaults_follow_the_reimplementation() -> None:
    cfg = NetAdaptConfig()
    assert (cfg.delta, cfg.decay, cfg.channel_step) == (0.025, 0.96, 8)
    # ΔR_i = ΔR_1 * decay^(i-1), computed independently
    assert cfg.step(1) == 0.025
    assert cfg.step(4) == pytest.approx(0.025 * 0.96 * 0.96 * 0.96, rel=1e-15)
    assert sum(cfg.step(i) for i in range(1, 41)) == pytest.approx(0.025 * (1 - 0.96**40) / 0.04)


def test_config_round_trip_and_unknown_keys() -> None:
    cfg = NetAdaptConfig(delta=0.05, report=("macs",), train_size=100)
    assert NetAdaptConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(HwawareError, match="unknown option 'short_term_step'.*did you mean 'short_term_steps'"):
        NetAdaptConfig.from_dict({"short_term_step": 3})


@pytest.mark.parametrize(
    "kw, fragment",
    [
        ({"delta": 0.0}, "delta"),
        ({"delta": 1.5}, "delta"),
        ({"decay": 0.0}, "decay"),
        ({"decay": math.nan}, "decay"),
        ({"channel_step": 0}, "channel_step"),
        ({"holdout": 0}, "holdout"),
        ({"pick": "efficency"}, "did you mean 'efficiency'"),
        ({"report": ("latency", "energi")}, "did you mean 'energy'"),
        ({"lr": -1.0}, "lr must be > 0"),
        ({"short_term_steps": 2.5}, "short_term_steps"),
    ],
)
def test_config_validation(kw: dict, fragment: str) -> None:
    with pytest.raises(HwawareError) as exc:
        NetAdaptConfig(**kw)
    assert fragment in str(exc.value)


def test_budget_dict_errors_show_keys_not_raw_dicts() -> None:
    from hwaware.errors import HwawareError
    from hwaware.netadapt.budget import Budget

    with pytest.raises(HwawareError, match=r"^budget \(resource=latency, valu=0.5\): unknown key 'valu'") as err:
        Budget.from_dict({"resource": "latency", "valu": 0.5})
    assert "{" not in str(err.value)
