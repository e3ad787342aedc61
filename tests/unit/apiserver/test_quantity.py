"""Resource quantities, checked against k8s.io/apimachinery pkg/api/resource (quantity.go, quantity_test.go).

The module is vdisk/quantity.py; its tests sit here because the API server is its main user.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from vdisk.quantity import (
    BINARY_SI,
    DECIMAL_EXPONENT,
    DECIMAL_SI,
    Quantity,
    QuantityError,
    format_bytes,
    parse_bytes,
)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        pytest.param("1024Mi", "1Gi", id="binary-promotes-suffix"),
        pytest.param("1.5Gi", "1536Mi", id="binary-fraction-demotes-suffix"),
        pytest.param("10Gi", "10Gi", id="binary-kept"),
        pytest.param("1536", "1536", id="decimal-not-divisible"),
        pytest.param("1536Ki", "1536Ki", id="binary-not-divisible-by-1024"),
        pytest.param("0.5Ki", "512", id="binary-below-1024-prints-plain"),
        pytest.param("0.1Ki", "102400m", id="binary-fraction-below-1024-prints-decimal"),
        pytest.param("0.5", "500m", id="decimal-fraction-to-milli"),
        pytest.param("1000", "1k", id="decimal-promotes-to-k"),
        pytest.param("1500", "1500", id="decimal-not-whole-in-k"),
        pytest.param("1500000", "1500k", id="decimal-whole-in-k"),
        pytest.param("1000m", "1", id="milli-to-unit"),
        pytest.param("100m", "100m", id="milli-kept"),
        pytest.param("1000000000n", "1", id="nano-to-unit"),
        pytest.param("5G", "5G", id="giga"),
        pytest.param("1000E", "1000E", id="exa-is-the-largest-suffix"),
        pytest.param("1e3", "1e3", id="exponent-kept"),
        pytest.param("1000e0", "1e3", id="exponent-normalized"),
        pytest.param("1e-10", "1e-9", id="below-nano-rounds-up"),
        pytest.param("0", "0", id="zero"),
        pytest.param("0Gi", "0", id="zero-binary"),
        pytest.param("-1Gi", "-1Gi", id="negative-binary"),
        pytest.param("-0.5", "-500m", id="negative-decimal"),
        pytest.param("+1k", "1k", id="explicit-plus"),
        pytest.param(" 1Gi ", "1Gi", id="surrounding-spaces-trimmed-as-json-unmarshal-does"),
    ],
)
def test_quantity_prints_canonical_form(text: str, canonical: str) -> None:
    assert str(Quantity.parse(text)) == canonical


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        pytest.param("1Ki", BINARY_SI, id="binary"),
        pytest.param("1k", DECIMAL_SI, id="decimal"),
        pytest.param("1", DECIMAL_SI, id="plain"),
        pytest.param("1e3", DECIMAL_EXPONENT, id="exponent"),
        pytest.param("1E", DECIMAL_SI, id="exa-suffix-not-exponent"),
    ],
)
def test_quantity_keeps_the_format_it_was_written_in(text: str, fmt: str) -> None:
    assert Quantity.parse(text).format == fmt


@pytest.mark.parametrize(
    ("text", "value"),
    [
        pytest.param("1Gi", 2**30, id="gibi"),
        pytest.param("1.5Gi", 1536 * 2**20, id="fractional-gibi"),
        pytest.param("10G", 10**10, id="giga"),
        pytest.param("1e3", 1000, id="exponent"),
        pytest.param("0.5", 1, id="half-rounds-up"),
        pytest.param("1001m", 2, id="milli-rounds-up"),
        pytest.param("1000m", 1, id="whole-milli"),
        pytest.param("0", 0, id="zero"),
        # Quantity.Value: "rounded up to the nearest integer away from 0"
        pytest.param("-1.5", -2, id="negative-rounds-away-from-zero"),
    ],
)
def test_quantity_bytes_rounds_up_like_value(text: str, value: int) -> None:
    assert Quantity.parse(text).bytes == value


def test_quantity_values_are_exact() -> None:
    assert Quantity.parse("0.1").value == Fraction(1, 10)
    assert Quantity.parse("1.1Gi").value == Fraction(11, 10) * 2**30


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("abc", id="letters"),
        pytest.param("1Gb", id="unknown-suffix"),
        pytest.param("1K", id="upper-case-k"),
        pytest.param("1.2.3", id="two-dots"),
        pytest.param("Gi", id="suffix-only"),
        pytest.param("1 Gi", id="inner-space"),
        pytest.param("1e", id="exponent-without-digits"),
        pytest.param("--1", id="double-sign"),
    ],
)
def test_invalid_quantity_raises_quantity_error(text: str) -> None:
    with pytest.raises(QuantityError):
        Quantity.parse(text)


def test_boolean_is_not_a_quantity() -> None:
    with pytest.raises(QuantityError):
        Quantity.parse(True)


@pytest.mark.parametrize(
    ("value", "canonical"),
    [pytest.param(5, "5", id="int"), pytest.param(1.5, "1500m", id="float")],
)
def test_numbers_parse_as_decimal_quantities(value: int | float, canonical: str) -> None:
    assert str(Quantity.parse(value)) == canonical


def test_parse_bytes_and_format_bytes_round_trip_binary_sizes() -> None:
    assert parse_bytes("10Gi") == 10 * 2**30
    assert format_bytes(10 * 2**30) == "10Gi"
    assert format_bytes(11381663335) == "11381663335"
    assert format_bytes(0) == "0"
