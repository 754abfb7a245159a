"""Traffic generators and the counters read around them."""
from typing import Any

#: What every test returns: {"metrics": {name: number or None}, "raw": {...}}
Result = dict[str, Any]
