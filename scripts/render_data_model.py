"""Render the data-model diagram from the DDL itself: docs/data-model.svg and the Mermaid block in docs/data-model.md.

The picture is computed from ddl/*.sql (parsed with sqlglot's BigQuery dialect), never drawn by hand, so it
cannot drift from the tables; tests/ddl/test_render.py re-renders and compares with what is committed.
No network, no browser: the SVG is written directly.

    .venv/bin/python scripts/render_data_model.py           # rewrite both
    .venv/bin/python scripts/render_data_model.py --check   # exit 1 when the committed files are stale
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ddl.model import Column, Table, parse_model  # noqa: E402

SVG_PATH = ROOT / "docs" / "data-model.svg"
DOC_PATH = ROOT / "docs" / "data-model.md"
BEGIN = "<!-- BEGIN GENERATED: scripts/render_data_model.py -->"
END = "<!-- END GENERATED -->"


# --- Mermaid ---------------------------------------------------------------------------------------------


def _mermaid_type(column: Column) -> str:
    # Mermaid attribute types are single words: ARRAY<STRUCT<...>> becomes ARRAY_STRUCT.
    return column.type.split("<")[0] + ("_STRUCT" if column.type.startswith("ARRAY<STRUCT") else "")


def _markers(table: Table, column: Column) -> str:
    notes = []
    if column.name == table.partition_column:
        notes.append("partition by day")
    if column.name in table.cluster:
        notes.append(f"cluster {table.cluster.index(column.name) + 1}")
    if column.required:
        notes.append("required")
    if column.fields:
        notes.append(", ".join(f.name for f in column.fields))
    return f' "{"; ".join(notes)}"' if notes else ""


def shared_keys(model: dict[str, Table]) -> list[tuple[str, str, str]]:
    """(table, table, key) for *_id columns two event tables share (top level or inside a STRUCT)."""
    ids: dict[str, list[str]] = {}
    for table in model.values():
        if table.kind != "table" or table.name.startswith("history_"):
            continue
        names = {c.name for c in table.columns} | {f.name for c in table.columns for f in c.fields}
        for key in sorted(n for n in names if n.endswith("_id") and n not in ("event_id", "message_id", "run_id")):
            ids.setdefault(key, []).append(table.name)
    return [(ts[0], other, key) for key, ts in ids.items() for other in ts[1:]]


def mermaid(model: dict[str, Table]) -> str:
    lines = ["erDiagram"]
    for table in model.values():
        if table.kind != "table":
            lines.append(f"    {table.name} {{")
            for source in table.sources:
                lines.append(f'        reads {source} "{table.kind}"')
            lines.append("    }")
            continue
        lines.append(f"    {table.name} {{")
        for column in table.columns:
            lines.append(f"        {_mermaid_type(column)} {column.name}{_markers(table, column)}")
        lines.append("    }")
    for a, b, key in shared_keys(model):
        lines.append(f'    {a} }}o--o{{ {b} : "{key}"')
    for table in model.values():
        for source in table.sources:
            if source in model:
                label = "lands into (MERGE)" if table.name.startswith("history_") else "derived from"
                if table.name.startswith("history_"):
                    lines.append(f'    {table.name} |o--o{{ {source} : "{label}"')
                else:
                    lines.append(f'    {source} ||--o{{ {table.name} : "{label}"')
    return "\n".join(lines) + "\n"


# --- SVG -------------------------------------------------------------------------------------------------

CHAR_W = 7.3  # DejaVu Sans Mono at 12px is 7.2 px a character; a little slack for other monospace fonts
ROW_H = 17
HEAD_H = 24
PAD = 8
GAP_X = 28
GAP_Y = 60
LEGEND = (
    "generated from ddl/*.sql by scripts/render_data_model.py · P partition (day) · C1.. cluster order · "
    "NN required · dashed: view / table function"
)


@dataclass
class Box:
    table: Table
    x: float
    y: float
    w: float
    h: float
    rows: list[tuple[str, str, str]]  # (name, type, note)


def _rows(table: Table) -> list[tuple[str, str, str]]:
    if table.kind != "table":
        return [("reads", ", ".join(table.sources), "")]
    if not table.columns:  # CREATE TABLE ... AS SELECT: the columns are those of what it selects from
        return [("event columns of", ", ".join(table.sources), ""), ("merged into", ", ".join(table.sources), "")]
    rows = []
    for column in table.columns:
        note = []
        if column.name == table.partition_column:
            note.append("P")
        if column.name in table.cluster:
            note.append(f"C{table.cluster.index(column.name) + 1}")
        if column.required:
            note.append("NN")
        short = (
            column.type
            if len(column.type) <= 16
            else column.type.split("<")[0] + ("<STRUCT>" if "STRUCT" in column.type[6:] else "<>")
        )
        rows.append((column.name, short, " ".join(note)))
        for member in column.fields:
            rows.append(("  ." + member.name, member.type, ""))
    return rows


def _is_landing(table: Table) -> bool:
    # A table created from another table's columns (CTAS), i.e. the history landing tables.
    return table.kind == "table" and not table.columns and bool(table.sources)


def _tiers(model: dict[str, Table]) -> list[list[Table]]:
    """Rows of the picture in data-flow order: landing tables, tables, then views by how far they derive."""
    depth: dict[str, int] = {}

    def depth_of(table: Table) -> int:
        if table.name not in depth:
            depth[table.name] = (
                0
                if table.kind == "table"
                else 1 + max((depth_of(model[s]) for s in table.sources if s in model), default=0)
            )
        return depth[table.name]

    landing = [t for t in model.values() if _is_landing(t)]
    rest = [t for t in model.values() if not _is_landing(t)]
    levels = sorted({depth_of(t) for t in rest})
    return [landing] + [[t for t in rest if depth_of(t) == level] for level in levels]


def _layout(model: dict[str, Table]) -> tuple[list[Box], float, float]:
    boxes: dict[str, Box] = {}
    y = 70.0
    width = 0.0
    for tier in _tiers(model):
        # Place each box near what it reads (or, for landing tables, what they feed), left to right.
        def anchor(table: Table) -> float:
            xs = [boxes[s].x for s in table.sources if s in boxes]
            return min(xs) if xs else float("inf")

        if tier and all(_is_landing(t) for t in tier):
            order = {t.name: i for i, t in enumerate(model.values())}
            tier = sorted(tier, key=lambda t: order[t.sources[0]] if t.sources else 0)
        else:
            tier = sorted(tier, key=anchor)
        x = 20.0
        tallest = 0.0
        for table in tier:
            rows = _rows(table)
            text = max([len(table.name) + len(table.kind) + 2] + [len(n) + len(t) + len(k) + 3 for n, t, k in rows])
            w = text * CHAR_W + 2 * PAD
            h = HEAD_H + len(rows) * ROW_H + PAD
            boxes[table.name] = Box(table, x, y, w, h, rows)
            x += w + GAP_X
            tallest = max(tallest, h)
        width = max(width, x)
        y += tallest + GAP_Y
    return list(boxes.values()), max(width, len(LEGEND) * CHAR_W + 40), y - GAP_Y + 20


def svg(model: dict[str, Table]) -> str:
    boxes, width, height = _layout(model)
    at = {b.table.name: b for b in boxes}
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" '
        'font-size="12">',
        "<defs><marker id='arrow' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='7' markerHeight='7' "
        "orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' fill='#555'/></marker></defs>",
        f'<rect width="{width:.0f}" height="{height:.0f}" fill="white"/>',
        '<text x="20" y="28" font-size="16" font-weight="bold">Event Workbench BigQuery data model</text>',
        f'<text x="20" y="48" fill="#555">{escape(LEGEND)}</text>',
    ]
    # Edges first, so boxes draw over them, in the direction data flows: from a table to the views that read it,
    # and from a landing table (drawn above) into the live table it is merged into.
    for box in boxes:
        for source in box.table.sources:
            if source not in at:
                continue
            src = at[source]
            upstream, downstream = (box, src) if _is_landing(box.table) else (src, box)
            x1, y1 = upstream.x + upstream.w / 2, upstream.y + upstream.h
            x2, y2 = downstream.x + downstream.w / 2, downstream.y
            out.append(
                f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" stroke="#888" '
                'stroke-width="1.2" marker-end="url(#arrow)"/>'
            )
    for box in boxes:
        table = box.table
        view = table.kind != "table"
        fill = "#eef5ff" if not view else "#f4fbef"
        if table.name.startswith("history_"):
            fill = "#fff7e6"
        if table.name == "dead_letters":
            fill = "#fdeeee"
        dash = ' stroke-dasharray="5,3"' if view else ""
        out.append(
            f'<rect x="{box.x:.0f}" y="{box.y:.0f}" width="{box.w:.0f}" height="{box.h:.0f}" rx="4" '
            f'fill="{fill}" stroke="#335"{dash}/>'
        )
        out.append(
            f'<text x="{box.x + PAD:.0f}" y="{box.y + 16:.0f}" font-weight="bold">{escape(table.name)}'
            f'<tspan font-weight="normal" fill="#666"> {escape(table.kind)}</tspan></text>'
        )
        out.append(
            f'<line x1="{box.x:.0f}" y1="{box.y + HEAD_H - 4:.0f}" x2="{box.x + box.w:.0f}" '
            f'y2="{box.y + HEAD_H - 4:.0f}" stroke="#335"/>'
        )
        subtitle = []
        if table.partition:
            subtitle.append(f"PARTITION BY {table.partition}")
        for i, (name, type_, note) in enumerate(box.rows):
            y = box.y + HEAD_H + 9 + i * ROW_H
            colour = "#777" if name.startswith("  .") else "#000"
            out.append(
                f'<text x="{box.x + PAD:.0f}" y="{y:.0f}" fill="{colour}">{escape(name)} '
                f'<tspan fill="#336">{escape(type_)}</tspan> <tspan fill="#a33">{escape(note)}</tspan></text>'
            )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def markdown_block(model: dict[str, Table]) -> str:
    return f"{BEGIN}\n```mermaid\n{mermaid(model)}```\n{END}"


def updated_doc(text: str, model: dict[str, Table]) -> str:
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < 0:
        raise SystemExit(f"{DOC_PATH} has no {BEGIN} ... {END} block to fill")
    return text[:start] + markdown_block(model) + text[end + len(END) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the committed files are current")
    args = parser.parse_args(argv)
    model = parse_model()
    want_svg = svg(model)
    want_doc = updated_doc(DOC_PATH.read_text(encoding="utf-8"), model)
    if args.check:
        stale = [p for p, want in ((SVG_PATH, want_svg), (DOC_PATH, want_doc)) if p.read_text(encoding="utf-8") != want]
        for path in stale:
            print(f"{path.relative_to(ROOT)} is stale: run scripts/render_data_model.py", file=sys.stderr)
        return 1 if stale else 0
    SVG_PATH.write_text(want_svg, encoding="utf-8")
    DOC_PATH.write_text(want_doc, encoding="utf-8")
    print(f"wrote {SVG_PATH.relative_to(ROOT)} and the diagram block of {DOC_PATH.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
