"""Regenerate docs/reason-codes.md from eventmodel/reasons.py. Run: .venv/bin/python scripts/render_reason_codes.py"""

from pathlib import Path

from eventmodel.reasons import markdown_table

target = Path(__file__).resolve().parent.parent / "docs" / "reason-codes.md"
target.write_text(markdown_table())
print(f"wrote {target}")
