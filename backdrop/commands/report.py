"""`backdrop report` and `python -m platform.report` — collect finished runs from MLflow into a Parquet table, print
Table-1-style tables (markdown and LaTeX) beside the poster's numbers, plot accuracy per
background and against the salt-and-pepper rate, and log it all as a `report` run.

Thin command line over backdrop.report; see docs/ABLATIONS.md for how to read the output."""
from backdrop.cli import Parser


def build_parser(prog="python -m platform.report"):
    p = Parser(prog=prog,
               description="Collect finished runs from MLflow into runs.parquet and print Table 1-style "
                           "tables (mean ± sd over seeds) in markdown and LaTeX, with figures.")
    p.add_argument("--tracking-uri", action="append", metavar="URI",
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here); "
                        "repeat it to collect from several stores (the report run is logged to the first)")
    p.add_argument("--experiment", action="append", metavar="NAME",
                   help="only runs of this experiment (repeatable; default: every experiment)")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE",
                   help="only runs with this tag value, e.g. --tag git_commit=<sha> or --tag ablation=mask_off "
                        "(repeatable; all must hold)")
    p.add_argument("--out", default="reports", metavar="DIR",
                   help="folder for runs.parquet, report.md, report.tex and the figures (default: reports/)")
    p.add_argument("--no-log", action="store_true", help="do not log the report as an MLflow run")
    return p


def main(argv=None, prog="python -m platform.report"):
    from backdrop.errors import UserError
    from backdrop.report import REPORT_EXPERIMENT, collect_stores, log_report, open_store, parse_tag_filters, write_report

    args = build_parser(prog).parse_args(argv)
    tags = parse_tag_filters(args.tag)
    uris = args.tracking_uri or [None]
    client, uri = open_store(uris[0])
    table = collect_stores(uris, args.experiment, tags)
    if len(uris) > 1:
        uri = ", ".join(open_store(u)[1] for u in uris)
    if table.num_rows == 0:
        where = f"experiment(s) {', '.join(args.experiment)}" if args.experiment else "any experiment"
        raise UserError(f"no finished runs with test metrics in {where}"
                        f"{' with tags ' + str(tags) if tags else ''} at {uri}")
    filters = {"experiment": ",".join(args.experiment or []) or "*", **{f"tag.{k}": v for k, v in tags.items()}}
    md, tex = write_report(table, args.out, header_note=f"{table.num_rows} runs from {uri}; filters {filters}")
    from backdrop.report import ablation_deltas
    from pathlib import Path
    forest = Path(args.out) / "ablations_forest.png"
    forest.unlink(missing_ok=True)              # a previous report's plot never passes for this one's
    deltas = ablation_deltas(client, args.experiment)
    if deltas:
        from backdrop.figures import forest_plot
        forest_plot(deltas, forest)
        md += (f"\n## Ablations\n\n![forest plot](ablations_forest.png)\n\nΔ ablation − reference per test column, "
               f"paired by seed, with 95 % intervals: {len(deltas)} ablation(s), each its newest finished comparison\n")
        (Path(args.out) / "report.md").write_text(md)
    print(md)
    print("LaTeX (booktabs):\n")
    print(tex)
    print(f"\nwrote {args.out}/runs.parquet ({table.num_rows} runs), report.md, report.tex and figures")
    if not args.no_log:
        run_id = log_report(client, args.out, table.num_rows, filters)
        print(f"logged as MLflow run {run_id} (experiment {REPORT_EXPERIMENT})")

