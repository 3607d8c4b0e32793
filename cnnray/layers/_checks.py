"""Argument checks shared by the layers: each raises ValueError naming the argument and what is allowed."""

from __future__ import annotations


def check_positive_int(name: str, value: object) -> int:
    """`value` as an int if it is an integer >= 1; ValueError naming `name` otherwise."""
    # bool is an int subclass, but True as a channel count is always a bug.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer (>= 1), got {value!r}")
    return value


def check_non_negative_int(name: str, value: object) -> int:
    """`value` as an int if it is an integer >= 0; ValueError naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer (>= 0), got {value!r}")
    return value


def check_drop_prob(name: str, value: object) -> float:
    """`value` as a float if it lies in [0, 1); ValueError naming `name` otherwise."""
    # 1.0 is refused: keeping nothing makes the 1 / keep_prob rescaling undefined.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")
    return float(value)


def check_positive_float(name: str, value: object) -> float:
    """`value` as a float if it is > 0; ValueError naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number (> 0), got {value!r}")
    return float(value)
