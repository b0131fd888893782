"""Writes the README's options table from the core's option list (tokenward._native.options()).
`python scripts/readme_options.py --check` fails when the README is stale (run by the tests)."""

from __future__ import annotations

import sys
from pathlib import Path

from tokenward import _native

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- options:start -->", "<!-- options:end -->"


def table() -> str:
    rows = ["| option | from | type | default | meaning |", "|---|---|---|---|---|"]
    for name, kind, default, help_text, choices, origin in _native.options():
        typ = "one of " + ", ".join(f"`{c}`" for c in choices) if kind == "choice" else kind
        shown = f"`{default}`" if default is not None else "—"
        rows.append(f"| `{name}` | {origin} | {typ} | {shown} | {help_text} |")
    return "\n".join(rows)


def render(text: str) -> str:
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table()}\n{END}{tail}"


def main() -> int:
    text = README.read_text()
    new = render(text)
    if "--check" in sys.argv:
        if new != text:
            print("README.md options table is stale: run python scripts/readme_options.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
