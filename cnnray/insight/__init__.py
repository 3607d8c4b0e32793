"""Pictures and numbers that explain a CNN: the tutorial's lessons (explore) drawn from cnnray's own parts.

Kept light on import: the workflow validates its arguments through `explore` before torch work starts.
"""

from cnnray.insight.explore import PARTS, check_out_dir, explore, parse_parts
from cnnray.insight.inspect_options import parse_layers, parse_what

__all__ = ["PARTS", "check_out_dir", "explore", "parse_layers", "parse_parts", "parse_what"]
