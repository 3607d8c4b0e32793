"""Promotion with evidence: paired statistics (plain numpy/scipy), the decision rule, and the gate that
evaluates candidate and champion on frozen data and moves aliases compare-and-set (through cnnray.tracking)."""

from cnnray.promote.rule import Decision, decide, decide_first, judge
from cnnray.promote.spending import Ledger, open_ledger
from cnnray.promote.stats import METRICS, PairedComparison, compare, mcnemar_exact, paired_bootstrap

__all__ = ["METRICS", "Decision", "Ledger", "PairedComparison", "compare", "decide", "decide_first", "judge",
           "mcnemar_exact", "open_ledger", "paired_bootstrap"]
