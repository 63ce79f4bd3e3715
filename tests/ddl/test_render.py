"""The diagram is generated from the DDL: re-rendering must reproduce the committed docs exactly."""

from __future__ import annotations

import re

import sqlglot
from ddl_helpers import REPO, load_render_script

from eventmodel import rows as R

render = load_render_script()


def test_committed_diagram_is_current():
    model = render.parse_model()
    assert (REPO / "docs" / "data-model.svg").read_text(encoding="utf-8") == render.svg(model), (
        "docs/data-model.svg is stale: run .venv/bin/python scripts/render_data_model.py"
    )
    doc = (REPO / "docs" / "data-model.md").read_text(encoding="utf-8")
    assert render.updated_doc(doc, model) == doc, "the Mermaid block is stale: run scripts/render_data_model.py"


def test_diagram_shows_every_table_and_view():
    model = render.parse_model()
    mermaid = render.mermaid(model)
    picture = render.svg(model)
    for name in [*R.TABLES.values(), R.DEAD_LETTER_TABLE, "orders_current", "order_status_history", "stock_levels"]:
        assert re.search(rf"^    {name} {{$", mermaid, re.M), name
        assert f">{name}<tspan" in picture, name
    # A column added to the DDL shows up in the picture: it is read from the DDL, not listed here.
    assert 'TIMESTAMP order_date "partition by day; required"' in mermaid
    assert 'orders }o--o{ inventory : "product_id"' in mermaid


def test_check_mode_reports_a_stale_file(tmp_path, monkeypatch):
    stale = tmp_path / "data-model.svg"
    stale.write_text("<svg/>", encoding="utf-8")
    doc = tmp_path / "data-model.md"
    doc.write_text((REPO / "docs" / "data-model.md").read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(render, "SVG_PATH", stale)
    monkeypatch.setattr(render, "DOC_PATH", doc)
    monkeypatch.setattr(render, "ROOT", tmp_path)
    assert render.main(["--check"]) == 1
    assert render.main([]) == 0 and render.main(["--check"]) == 0


def test_query_examples_in_the_docs_parse():
    doc = (REPO / "docs" / "data-model.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sql\n(.*?)```", doc, re.S)
    assert len(blocks) >= 4
    for block in blocks:
        for statement in sqlglot.parse(block, read="bigquery", error_level=sqlglot.ErrorLevel.RAISE):
            assert not isinstance(statement, sqlglot.exp.Command), statement.sql()[:80]
