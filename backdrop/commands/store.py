"""`backdrop store` and `python -m platform.store` — keep an sqlite MLflow store safe in durable
storage (see backdrop/store.py): `backup` once, `keep` backing up on every change, `restore`."""
from backdrop.cli import Parser


def build_parser(prog="python -m platform.store"):
    p = Parser(prog=prog, description="Copy an sqlite MLflow store to durable storage (s3://..., gs://... or a "
                                      "folder) and bring it back: what keeps a cluster's runs through `ray down`.")
    p.add_argument("action", choices=["backup", "keep", "restore"],
                   help="backup: copy once; keep: copy on every change until stopped; restore: bring the store back")
    p.add_argument("--store", default="mlflow.db", help="the sqlite database: a path or sqlite:///PATH (default: ./mlflow.db)")
    p.add_argument("--copy", required=True, metavar="URI",
                   help="where the copy lives, e.g. s3://BUCKET/mlflow/mlflow.db or /mnt/backup/mlflow.db")
    p.add_argument("--every", type=float, default=10.0, help="keep: seconds between checks for changes (default: 10)")
    p.add_argument("--force", action="store_true", help="restore: replace an existing database with the copy")
    return p


def main(argv=None, prog="python -m platform.store"):
    from backdrop import store

    args = build_parser(prog).parse_args(argv)
    if args.every <= 0:
        from backdrop.errors import UserError
        raise UserError(f"--every must be positive, got {args.every}")
    if args.action == "backup":
        size = store.backup(args.store, args.copy)
        print(f"backed up {store.db_path(args.store)} to {args.copy} ({size} bytes)")
    elif args.action == "restore":
        print(store.restore(args.store, args.copy, force=args.force))
    else:
        print(f"keeping {store.db_path(args.store)} backed up to {args.copy} (every {args.every:g} s; Ctrl-C stops)",
              flush=True)
        store.keep(args.store, args.copy, every_s=args.every, log=lambda line: print(line, flush=True))
