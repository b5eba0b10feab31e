"""Draw a benchmark's JSON as a bar chart beside it: ``python bench/plot.py bench/results/data_layer.json``."""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed: write a file
import matplotlib.pyplot as plt


def plot(results_json: Path) -> Path:
    """Sends per second next to the machine's ceiling, per configuration. Returns the PNG's path."""
    document = json.loads(results_json.read_text(encoding="utf-8"))
    results = document["results"]
    labels = [result["configuration"].replace(", ", "\n") for result in results]
    positions = range(len(results))
    figure, axes = plt.subplots(figsize=(10, 5))
    axes.bar(
        [p - 0.2 for p in positions], [r["ceiling_per_s"] for r in results], width=0.4, label="ceiling: plain inserts"
    )
    axes.bar([p + 0.2 for p in positions], [r["sends_per_s"] for r in results], width=0.4, label="sends")
    for position, result in zip(positions, results, strict=True):
        axes.annotate(f"{result['ratio']:.2f}", (position + 0.2, result["sends_per_s"]), ha="center", va="bottom")
    axes.set_xticks(list(positions), labels, fontsize=8)
    axes.set_ylabel("per second")
    axes.set_title(f"{document['benchmark']}: sends vs. the same machine's ceiling (ratio on each bar)")
    axes.legend()
    figure.tight_layout()
    output = results_json.with_suffix(".png")
    figure.savefig(output, dpi=100)
    plt.close(figure)
    return output


if __name__ == "__main__":
    print(f"Written to {plot(Path(sys.argv[1]))}")
