"""The results collector's printing side: plain-text / markdown tables of accuracies."""
from .backgrounds import TEST_FAMILIES

TEST_COLUMNS = ("clean", *TEST_FAMILIES, "mean", "worst", "bg_gap")

# Table 1 of the poster (METHOD.md), MNIST test accuracy in %.
PAPER_TABLE1 = {
    "vanilla": {"clean": 97.3, "stripes": 38.0, "board": 24.3, "border": 61.4, "circles": 32.9, "clock": 19.7, "random": 11.2},
    "attention": {"clean": 93.4, "stripes": 28.1, "board": 26.8, "border": 57.3, "circles": 40.1, "clock": 29.3, "random": 25.1},
    "adversarial": {"clean": 94.9, "stripes": 92.3, "board": 76.8, "border": 93.1, "circles": 93.7, "clock": 70.8, "random": 86.2},
}


def markdown_table(header, rows):
    """rows: lists of cells (already strings)."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def pct(v):
    return "-" if v is None else f"{100 * v:.1f}"


def print_run_summary(cfg, result):
    test = result["test"]
    cols = [c for c in TEST_COLUMNS if c in test]
    print(f"\nTest accuracy (%) — {cfg['method']} on {cfg['dataset']}, MLflow run {result['run_id']}")
    print(markdown_table(["method", *cols], [[cfg["method"], *(pct(test[c]) for c in cols)]]))
    if result.get("val"):
        v = result["val"]
        print(f"validation (other background families): clean {pct(v.get('clean'))}, "
              f"mean {pct(v.get('mean'))}, worst {pct(v.get('worst'))}")
