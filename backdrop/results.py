"""The results collector's printing side: plain-text / markdown tables of accuracies."""
from .backgrounds import FIXED_DRAWING_FAMILIES, TEST_FAMILIES, VAL_FAMILIES

TEST_COLUMNS = ("clean", *TEST_FAMILIES, "photos", "mean", "worst", "bg_gap")   # photos: colour data sets only

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


# ---------------------------------------------------------------- summaries over seeds
def mean_sd_cell(values, scale=100.0):
    """'95.8 ± 0.4' over seeds (accuracies in [0, 1] → %); one value prints alone; none → '-'."""
    from .stats import mean_sd
    m, sd = mean_sd(values)
    if m is None:
        return "-"
    return f"{scale * m:.1f}" if sd is None else f"{scale * m:.1f} ± {scale * sd:.1f}"


def ablation_table(c):
    """The ablation comparison (a backdrop.ablate.Comparison) as markdown, with how to read it."""
    delta_head = f"Δ {c.ablation} − {c.reference}"
    rows = []
    for r in c.rows:
        d = r.delta
        ci = "n/a (1 seed)" if d.low is None else f"[{100 * d.low:+.1f}, {100 * d.high:+.1f}]"
        rows.append([r.name, mean_sd_cell(r.reference), mean_sd_cell(r.variant), f"{100 * d.mean:+.1f}", ci,
                     "*" if d.significant else ""])
    n = len(c.seeds)
    return "\n".join([
        f"Ablation {c.ablation} vs reference {c.reference} — test accuracy (%) on {c.dataset}, "
        f"{n} seed{'s' if n != 1 else ''} {list(c.seeds)} (MLflow parent run {c.parent_run_id})",
        markdown_table(["background", f"{c.reference} (reference)", c.ablation, delta_head, "95 % CI", "excl. 0"], rows),
        "mean ± sd over seeds; Δ = ablation − reference paired by seed, in points, with its 95 % t-interval "
        f"({n - 1} df); * = the interval excludes 0.",
        ablation_verdict(c),
    ])


def ablation_verdict(c):
    """The table's answer in words: which differences the seeds show, and how precise it is."""
    if len(c.seeds) < 2:
        return "Verdict: none possible from one seed (no interval); run at least two, better five."
    real = [r for r in c.rows if r.delta.significant]
    widest = max(r.delta.high - r.delta.mean for r in c.rows)
    mean = next((r for r in c.rows if r.name == "mean"), None)
    said = (f"Verdict: {c.ablation} differs from {c.reference} on "
            + ", ".join(f"{r.name} ({100 * r.delta.mean:+.1f})" for r in real)
            + ("" if len(real) == len(c.rows) else "; on the rest the seeds show no difference")
            if real else f"Verdict: the seeds show no difference between {c.ablation} and {c.reference} on any row")
    precision = f"intervals as wide as ±{100 * widest:.1f} points"
    if mean is not None:
        precision += f", ±{100 * (mean.delta.high - mean.delta.mean):.1f} on the mean"
    return f"{said} ({precision}; more seeds narrow them)."


def ablation_summary(comparisons):
    """Several ablations against one reference, one row each: Δ per column with its interval,
    `*` where the interval excludes 0 (the answers side by side)."""
    c0 = comparisons[0]
    columns = [r.name for r in c0.rows]
    rows = []
    for c in comparisons:
        cells = {r.name: r.delta for r in c.rows}
        rows.append([c.ablation, *(_delta_cell(cells[name]) for name in columns)])
    n = len(c0.seeds)
    references = sorted({c.reference for c in comparisons})
    return "\n".join([
        f"Ablations vs {', '.join(references)} — Δ test accuracy (points) on {c0.dataset}, {n} paired seed"
        f"{'s' if n != 1 else ''} {list(c0.seeds)}",
        markdown_table(["ablation", *columns], rows),
        f"Δ = ablation − reference paired by seed [95 % t-interval, {n - 1} df]; * = the interval excludes 0.",
    ])


def _delta_cell(d):
    if d.low is None:
        return f"{100 * d.mean:+.1f}"
    return f"{100 * d.mean:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}]{'*' if d.significant else ''}"


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
          "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text):
    """Escape LaTeX specials character by character; '±' becomes a math-mode plus-minus."""
    return "".join(_LATEX.get(ch, ch) for ch in str(text)).replace("±", r"$\pm$")


def latex_table(header, rows, caption=""):
    """A booktabs tabular (needs \\usepackage{booktabs}); cells as in markdown_table."""
    lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
             " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(r"\caption{" + latex_escape(caption) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines)


TABLE1_COLUMNS = ("clean", *TEST_FAMILIES, "mean", "worst")


def test_columns(groups):
    """Table 1's columns, with `photos` before the summaries when a run has it (a colour data
    set's suite: its mean and worst include it)."""
    if any(r.get("test/photos") is not None for rs in groups.values() for r in rs):
        return ("clean", *TEST_FAMILIES, "photos", "mean", "worst")
    return TABLE1_COLUMNS
VAL_COLUMNS = ("clean", *VAL_FAMILIES, *(f"{f}_fixed" for f in FIXED_DRAWING_FAMILIES), "mean", "worst")


def paper_row(method):
    """A poster row (already in %) with its mean and worst over the six backgrounds."""
    row = PAPER_TABLE1[method]
    bg = [row[f] for f in TEST_FAMILIES]
    return {**row, "mean": sum(bg) / len(bg), "worst": min(bg)}


def below_poster(run, label):
    """The test columns where this run is below the poster's row for `label` (MNIST), in order."""
    paper = PAPER_TABLE1.get(label)
    if not paper:
        return []
    return [c for c in ("clean", *TEST_FAMILIES)
            if run.get(f"test/{c}") is not None and 100 * run[f"test/{c}"] < paper[c]]


def per_seed_rows(groups, with_paper=False):
    """One row per (label, seed): the seed's own test columns, its final validation worst, and
    the columns where it is below the poster. A promise made per seed is checked per seed: a
    mean over seeds hides the one that failed. Also returns one summary line per label."""
    columns = test_columns(groups)
    header = ["method", "seed", *columns, "val worst", "below the poster"]
    rows, summary = [], []
    for label, runs in groups.items():
        failing = 0
        for r in sorted(runs, key=lambda r: (r.get("seed") is None, r.get("seed") or 0)):
            below = below_poster(r, label) if with_paper else []
            failing += bool(below)
            rows.append([label, "-" if r.get("seed") is None else str(r["seed"]),
                         *(pct(r.get(f"test/{c}")) for c in columns), pct(r.get("val/worst")),
                         ", ".join(below) or ("none" if with_paper and label in PAPER_TABLE1 else "-")])
        if with_paper and label in PAPER_TABLE1:
            summary.append(f"{label}: {failing} of {len(runs)} seed(s) below the poster on some column")
    return header, rows, summary


def table1_rows(groups, with_paper=False, split="test"):
    """Table 1's layout: one row per label (method or ablation spec), cells mean ± sd over its runs.

    groups: {label: [rows with '<split>/<column>' accuracies in [0, 1]]}. With `with_paper`, each
    label that the poster reports is followed by the poster's row, so the two read side by side.
    split="val" gives the same layout over the validation split's background families: the
    numbers model selection may look at."""
    columns = test_columns(groups) if split == "test" else VAL_COLUMNS
    header = ["method", "n", *columns]
    rows = []
    for label, runs in groups.items():
        rows.append([label, str(len(runs)),
                     *(mean_sd_cell([r[f"{split}/{c}"] for r in runs if r.get(f"{split}/{c}") is not None])
                       for c in columns)])
        if with_paper and label in PAPER_TABLE1:
            paper = paper_row(label)
            rows.append([f"{label} (poster)", "-", *(f"{paper[c]:.1f}" if c in paper else "-" for c in columns)])
    return header, rows
