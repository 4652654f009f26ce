"""Money: minor units, half-up rounding and largest-remainder splits (no database).

Every expected value is worked out by hand in the case's comment, so a table row
fails on its own rather than agreeing with the code it checks.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portal.billing.money import minor_units, quantize, quantum, split_largest_remainder

D = Decimal


@pytest.mark.parametrize(
    ("currency", "digits", "smallest"),
    [
        ("USD", 2, "0.01"),
        ("EUR", 2, "0.01"),
        ("JPY", 0, "1"),
        ("jpy", 0, "1"),  # codes are case-insensitive
        ("KWD", 3, "0.001"),
        ("BHD", 3, "0.001"),
        ("CLF", 4, "0.0001"),
        ("XYZ", 2, "0.01"),  # unknown codes default to two digits
    ],
)
def test_minor_units_and_quantum(currency: str, digits: int, smallest: str) -> None:
    assert minor_units(currency) == digits
    assert quantum(currency) == D(smallest)
    assert str(quantum(currency)) == smallest


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("0.125", "USD", "0.13"),  # half-up, not banker's (0.12)
        ("-0.125", "USD", "-0.13"),  # half away from zero for credits too
        ("0.135", "USD", "0.14"),
        ("0.1249999", "USD", "0.12"),
        ("-0.1249999", "USD", "-0.12"),
        ("25", "USD", "25.00"),  # the exponent is the currency's
        ("2.5", "JPY", "3"),
        ("-2.5", "JPY", "-3"),
        ("3548.387096774", "JPY", "3548"),  # 22/31 of 5000 JPY
        ("1.0005", "KWD", "1.001"),
        ("1.0004", "KWD", "1.000"),
        ("-0.001", "USD", "0.00"),  # never "-0.00" on an invoice
        ("-0.4", "JPY", "0"),
    ],
)
def test_quantize_half_up(amount: str, currency: str, expected: str) -> None:
    assert str(quantize(D(amount), currency)) == expected


@pytest.mark.parametrize(
    ("total", "weights", "currency", "expected"),
    [
        # 10000 cents / 3 = 3333.33 each: floors 3333 ×3, one cent left → first (tie).
        ("100.00", [1, 1, 1], "USD", ["33.34", "33.33", "33.33"]),
        # 1000 cents by 1:2:3 = 166.67, 333.33, 500 → floors 166+333+500 = 999; the
        # largest remainder (.67) takes the last cent.
        ("10.00", [1, 2, 3], "USD", ["1.67", "3.33", "5.00"]),
        # 2 cents by 1:1:1 = .67 each → floors 0; ties go to the earlier parts.
        ("0.02", [1, 1, 1], "USD", ["0.01", "0.01", "0.00"]),
        # Proportional to recurring charges of 50.00 and 150.00: 25% and 75%.
        ("10.00", ["50.00", "150.00"], "USD", ["2.50", "7.50"]),
        # A zero weight gets nothing.
        ("1.00", [0, 1, 1], "USD", ["0.00", "0.50", "0.50"]),
        # All weights zero: nothing to spread over.
        ("5.00", [0, 0], "USD", ["0.00", "0.00"]),
        # Negative total: split the magnitude, give every part the sign.
        ("-1.00", [1, 1, 1], "USD", ["-0.34", "-0.33", "-0.33"]),
        ("-1.00", [0, 1], "USD", ["0.00", "-1.00"]),
        # JPY: whole yen; 1000 / 3 = 333.33 → 334, 333, 333.
        ("1000", [1, 1, 1], "JPY", ["334", "333", "333"]),
        # KWD: 1000 fils by 1:2 = 333.33, 666.67 → floors 333+666, the .67 wins.
        ("1.000", [1, 2], "KWD", ["0.333", "0.667"]),
        ("0.00", [1, 2], "USD", ["0.00", "0.00"]),
        ("7.00", [], "USD", []),
    ],
)
def test_split_largest_remainder(
    total: str, weights: list, currency: str, expected: list[str]
) -> None:
    parts = split_largest_remainder(D(total), [D(w) for w in weights], currency)
    assert [str(p) for p in parts] == expected
    if any(weights):  # all-zero weights documentedly give all-zero parts
        assert sum(parts, D(0)) == D(total)


@pytest.mark.parametrize(
    ("total", "weights"),
    [
        ("0.125", [1, 1]),  # not a whole number of cents: the parts could not add up
        ("1.00", [-1, 3]),  # a negative weight has no meaning as a share
    ],
)
def test_split_largest_remainder_refuses_bad_input(total: str, weights: list[int]) -> None:
    with pytest.raises(ValueError):
        split_largest_remainder(D(total), [D(w) for w in weights], "USD")


@settings(max_examples=200, deadline=None)
@given(
    units=st.integers(min_value=-(10**9), max_value=10**9),
    weights=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=12),
    currency=st.sampled_from(["USD", "JPY", "KWD"]),
)
def test_split_always_adds_up_and_stays_within_one_unit(
    units: int, weights: list[int], currency: str
) -> None:
    q = quantum(currency)
    total = D(units) * q
    parts = split_largest_remainder(total, [D(w) for w in weights], currency)
    weight_sum = sum(weights)
    if weight_sum == 0:
        assert all(p == 0 for p in parts)
        return
    assert sum(parts, D(0)) == total
    for part, weight in zip(parts, weights, strict=True):
        exact = total * weight / weight_sum
        assert abs(part - exact) < q
        assert part == part.quantize(q)
