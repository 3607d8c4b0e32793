"""Which `cnnray bench tune` runs: ASHA against FIFO by default, or one of the variants a flag names."""

from __future__ import annotations

from typing import Any

from cnnray.errors import UserInputError

# flag -> (result name, module, run function, format function, keyword of N, smallest N)
VARIANTS = {
    "overhead": ("tune_overhead", "cnnray.bench.tune", "run_overhead_bench", "format_overhead_bench", "n", 1),
    "scale": ("tune_scale", "cnnray.bench.tune_scale", "run_scale_bench", "format_scale_bench", "n", 10),
    "store_runs": ("tune_store", "cnnray.bench.mlflow_store", "run_store_bench", "format_store_bench", "runs", 1),
}


def tune_variant(which: str, values: dict[str, int | None]) -> tuple[str, str, str, str, dict[str, Any]] | None:
    """(result name, module, run function, format function, kwargs) of the variant given in `values` (flag ->
    N or None), or None for the plain bench; UserInputError for a flag off `tune`, a small N, or two flags."""
    given = {flag: n for flag, n in values.items() if n is not None}
    for flag, n in given.items():
        low = VARIANTS[flag][5]
        if which != "tune" or n < low:
            raise UserInputError(f"--{flag.replace('_', '-')} N (N >= {low}) applies to `cnnray bench tune`; got "
                                 f"`{which}` with N={n}")
    if len(given) > 1:
        raise UserInputError("cnnray bench tune: give one of --overhead, --scale, --store-runs")
    if not given:
        return None
    flag, n = next(iter(given.items()))
    name, module, run, fmt, key, _ = VARIANTS[flag]
    return name, module, run, fmt, {key: n}
