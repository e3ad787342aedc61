"""Kubernetes resource quantities ("10Gi", "500m", "1.5G", "1e3"): parse, compare, print canonically.

Upstream: k8s.io/apimachinery/pkg/api/resource/quantity.go. A quantity keeps the format it was written
in (binary SI, decimal SI or decimal exponent); its canonical string picks the largest suffix of that
format that keeps the number whole ("1024Mi" -> "1Gi", "1.5Gi" -> "1536Mi", "0.5" -> "500m").
Values are exact (Fraction), so sizes in bytes never suffer float rounding.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
# The exponent form is tried before the one-letter suffixes, so "1E" is exa and "1E3" is 1000.
_RE = re.compile(r"^([+-]?)(\d+(?:\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?\d+|[numkMGTPE])?$")

BINARY_SI, DECIMAL_SI, DECIMAL_EXPONENT = "BinarySI", "DecimalSI", "DecimalExponent"


class QuantityError(ValueError):
    pass


@dataclass(frozen=True)
class Quantity:
    value: Fraction
    format: str = DECIMAL_SI

    @classmethod
    def parse(cls, text: str | int | float) -> Quantity:
        if isinstance(text, bool):
            raise QuantityError("quantities must match the regular expression "
                                "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
        if isinstance(text, int):
            return cls(Fraction(text), DECIMAL_SI)
        if isinstance(text, float):
            return cls(Fraction(str(text)), DECIMAL_SI)
        m = _RE.match(text.strip()) if isinstance(text, str) else None
        if not m:
            raise QuantityError("quantities must match the regular expression "
                                "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
        sign, num, suffix = m.group(1), m.group(2), m.group(3) or ""
        value = Fraction(num)
        if suffix in _BINARY:
            value *= _BINARY[suffix]
            fmt = BINARY_SI
        elif len(suffix) > 1 and suffix[0] in ("e", "E"):
            value *= Fraction(10) ** int(suffix[1:])
            fmt = DECIMAL_EXPONENT
        else:
            value *= Fraction(10) ** _DECIMAL[suffix]
            fmt = DECIMAL_SI
        if sign == "-":
            value = -value
        return cls(value, fmt)

    @property
    def bytes(self) -> int:
        """The value rounded away from zero to a whole number, as Quantity.Value() does."""
        return math.ceil(self.value) if self.value >= 0 else math.floor(self.value)

    def __str__(self) -> str:
        return canonical(self.value, self.format)


def canonical(value: Fraction, fmt: str) -> str:
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    v = abs(value)
    if fmt == BINARY_SI and v.denominator == 1 and v >= 1024:
        n = int(v)
        for suffix, mult in reversed(list(_BINARY.items())):
            if n % mult == 0:
                return f"{sign}{n // mult}{suffix}"
        return f"{sign}{n}"
    if fmt == BINARY_SI and v.denominator == 1:
        return f"{sign}{int(v)}"
    # Decimal: the largest power-of-1000 exponent that keeps the mantissa whole (values below 1n round up).
    exp = -9
    scaled = v * Fraction(10) ** 9
    if scaled.denominator != 1:
        scaled = Fraction(math.ceil(scaled))
    n = int(scaled)
    while exp < 18 and n % 1000 == 0:
        n //= 1000
        exp += 3
    if fmt == DECIMAL_EXPONENT:
        return f"{sign}{n}" if exp == 0 else f"{sign}{n}e{exp}"
    suffix = {v: k for k, v in _DECIMAL.items()}[exp]
    return f"{sign}{n}{suffix}"


def parse_bytes(text: str | int) -> int:
    return Quantity.parse(text).bytes


def format_bytes(n: int) -> str:
    """Canonical binary form for a byte count we computed ("10Gi", "11381663335")."""
    return canonical(Fraction(n), BINARY_SI)
