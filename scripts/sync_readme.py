"""Rewrite the README's config reference from the schema (tests/test_sync.py checks it)."""

from pathlib import Path

from grpo_cli.config.reference import README_BEGIN, README_END, as_markdown

readme = Path(__file__).resolve().parents[1] / "README.md"
text = readme.read_text(encoding="utf-8")
start, end = text.index(README_BEGIN) + len(README_BEGIN), text.index(README_END)
readme.write_text(f"{text[:start]}\n{as_markdown()}\n{text[end:]}", encoding="utf-8")
print(f"updated {readme}")
