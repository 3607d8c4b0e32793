"""Argument checks shared by the layers and the models: each raises ValueError naming the argument and what
is allowed (`name: expected ..., got ...`)."""

from __future__ import annotations

import math


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """`value` if it is an integer >= `minimum`; ValueError naming `name` otherwise."""
    # bool is an int subclass, but True as a channel count is always a bug.
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


def check_positive_int(name: str, value: object) -> int:
    """`value` as an int if it is an integer >= 1; ValueError naming `name` otherwise."""
    return check_int(name, value, 1)


def check_non_negative_int(name: str, value: object) -> int:
    """`value` as an int if it is an integer >= 0; ValueError naming `name` otherwise."""
    return check_int(name, value, 0)


def check_drop_prob(name: str, value: object) -> float:
    """`value` as a float if it lies in [0, 1); ValueError naming `name` otherwise."""
    # 1.0 is refused: keeping nothing makes the 1 / keep_prob rescaling undefined.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name}: expected a number in [0, 1), got {value!r}")
    return float(value)


def check_positive_float(name: str, value: object) -> float:
    """`value` as a float if it is a finite number > 0; ValueError naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name}: expected a number > 0, got {value!r}")
    return float(value)
