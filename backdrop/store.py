"""A tracking store that survives its host: copies of an sqlite MLflow store kept in durable
storage (s3://…, gs://…, or a folder on another disk), and the store brought back from them.

On a cluster the MLflow server keeps its runs in sqlite on the head node's disk (artifacts go to
S3 already): `ray down`, or a lost head, would delete every run. So cluster.yaml starts
`backdrop store keep` beside the server, which copies the database to the bucket within seconds
of every change (a finished trial, an epoch), and `backdrop store restore` brings it back before
the server starts on the next `ray up`.

The copy is taken with sqlite's online backup API: a consistent snapshot even while the server
writes, never a half-written file.
"""
import os
import signal
import sqlite3
import tempfile
import threading
import time
from contextlib import closing
from pathlib import Path

from .errors import UserError
from .tracking import sqlite_file


def db_path(uri_or_path):
    """The database file of `sqlite:///…` or a plain path (absolute, `~` expanded)."""
    text = str(uri_or_path)
    if "://" in text and not text.startswith("sqlite:///"):
        raise UserError(f"{text}: only an sqlite store (sqlite:///FILE or a file path) is copied; "
                        "a database server keeps its own backups")
    return sqlite_file(text) or Path(text).expanduser().resolve()


def _filesystem(uri):
    import pyarrow.fs
    try:
        if "://" not in uri:
            return pyarrow.fs.LocalFileSystem(), str(Path(uri).expanduser().resolve())
        return pyarrow.fs.FileSystem.from_uri(uri)
    except Exception as e:
        raise UserError(f"{uri}: cannot open this location ({type(e).__name__}: {str(e).splitlines()[0]})") from None


def _exists(fs, path):
    import pyarrow.fs
    return fs.get_file_info(path).type == pyarrow.fs.FileType.File


def snapshot(db, out):
    """A consistent copy of the sqlite database `db` at the file `out`."""
    source = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(out)
        with target:
            source.backup(target)
        target.close()
    finally:
        source.close()


def backup(store, dest):
    """Copy the sqlite store to `dest` (a file URI or path), replacing the previous copy; returns
    its size in bytes."""
    db = db_path(store)
    if not db.is_file():
        raise UserError(f"{db}: no such MLflow database to back up")
    fs, path = _filesystem(dest)
    with tempfile.TemporaryDirectory() as d:
        copy = Path(d) / "mlflow.db"
        try:
            snapshot(db, copy)
        except sqlite3.DatabaseError as e:
            raise UserError(f"{db}: not an sqlite database ({e}); name the MLflow store's file") from None
        parent = os.path.dirname(path)
        if parent:
            fs.create_dir(parent, recursive=True)
        partial = f"{path}.partial"
        with open(copy, "rb") as src, fs.open_output_stream(partial) as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
        fs.move(partial, path)        # a reader never sees a half-written copy
        return copy.stat().st_size


def restore(store, source, force=False):
    """Bring the store back from its copy at `source`. An existing database is kept unless
    `force` (restore never overwrites newer records by surprise). Returns what it did."""
    db = db_path(store)
    fs, path = _filesystem(source)
    if not _exists(fs, path):
        return f"no copy at {source}: nothing to restore (a first start)"
    if db.exists() and not force:
        return f"{db} exists: kept (pass --force to replace it with the copy at {source})"
    db.parent.mkdir(parents=True, exist_ok=True)
    partial = db.with_name(db.name + ".partial")
    with fs.open_input_stream(path) as src, open(partial, "wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
    try:
        with closing(sqlite3.connect(partial)) as check:
            verdict = check.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as e:
        verdict = str(e)
    if verdict != "ok":
        partial.unlink()
        raise UserError(f"{source}: the copy is damaged ({verdict}); {db} was left as it was")
    os.replace(partial, db)
    return f"restored {db} from {source} ({db.stat().st_size} bytes)"


def _signature(db):
    """What changes when sqlite writes: the database file and its journal/WAL files."""
    out = []
    for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-journal")):
        try:
            st = p.stat()
            out.append((p.name, st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            pass
    return tuple(out)


def keep(store, dest, every_s=10.0, stop=None, log=print):
    """Back the store up to `dest` whenever it has changed, checking every `every_s` seconds,
    until `stop` (a threading.Event) is set or SIGTERM/Ctrl-C; a last copy is taken on the way
    out. Runs beside the MLflow server on a cluster's head node."""
    db = db_path(store)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    last = None
    try:
        while True:
            now = _signature(db) if db.exists() else None
            if now is not None and now != last:
                size = backup(db, dest)
                last = now
                log(f"{time.strftime('%H:%M:%S')} backed up {db} to {dest} ({size} bytes)")
            if stop.wait(every_s):
                break
    except KeyboardInterrupt:
        pass
    if db.exists() and _signature(db) != last:
        backup(db, dest)
        log(f"{time.strftime('%H:%M:%S')} backed up {db} to {dest} (on exit)")
