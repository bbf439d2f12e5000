"""Benchmarks write their figures into a section of a markdown file (docs/BENCHMARKS.md): the
section is replaced, or added at the end; the rest of the file is left as it is."""
import re
from pathlib import Path


def write_section(path, title, text):
    path = Path(path)
    old = path.read_text() if path.is_file() else "# Benchmarks\n"
    section = f"## {title}\n\n" + text.strip() + "\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _: section + "\n", old) if pattern.search(old) else old.rstrip() + "\n\n" + section
    path.write_text(new.rstrip() + "\n")
