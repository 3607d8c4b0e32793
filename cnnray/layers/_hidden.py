"""Hidden width of a channel-attention bottleneck MLP."""

from __future__ import annotations

from ._checks import check_non_negative_int, check_positive_int


def reduced_channels(channels: int, reduction: int, min_hidden: int) -> int:
    """max(channels // reduction, min_hidden); ValueError when that leaves no hidden unit."""
    channels = check_positive_int("channels", channels)
    reduction = check_positive_int("reduction", reduction)
    min_hidden = check_non_negative_int("min_hidden", min_hidden)
    hidden = max(channels // reduction, min_hidden)
    if hidden < 1:
        raise ValueError(
            f"reduction={reduction} leaves no hidden units for channels={channels} with min_hidden=0: "
            f"use reduction <= {channels} or min_hidden >= 1"
        )
    return hidden
