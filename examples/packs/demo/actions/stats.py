"""Statistics of a list of numbers. Parameters: one JSON line on stdin."""
import json
import statistics
import sys

params = json.loads(sys.stdin.readline() or "{}")
numbers = params.get("numbers") or []
if not numbers:
    print("stats: 'numbers' must be a non-empty list", file=sys.stderr)
    sys.exit(2)
print(f"computing statistics of {len(numbers)} numbers", file=sys.stderr)
print(json.dumps({
    "label": params.get("label", "numbers"),
    "count": len(numbers),
    "sum": sum(numbers),
    "mean": statistics.fmean(numbers),
    "min": min(numbers),
    "max": max(numbers),
}))
