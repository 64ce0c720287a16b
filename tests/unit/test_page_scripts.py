"""Pages carry no inline script, so the content security policy needs no 'unsafe-inline' and
no nonces (mecc.views.headers): every script is a file under mecc/static."""

from __future__ import annotations

import re
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[2] / "mecc" / "templates"
SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.I)
EVENT_HANDLER = re.compile(r"""<[^>]*\son[a-z]+\s*=""", re.I)


def test_templates_have_no_inline_script_or_event_handler_or_style_element() -> None:
    templates = sorted(TEMPLATES.glob("*.html"))
    assert templates
    for template in templates:
        text = template.read_text()
        for attributes in SCRIPT_TAG.findall(text):
            # A JSON data block is never run; anything else must be a file.
            data_block = 'type="application/json"' in attributes
            assert "src=" in attributes or data_block, f"{template.name}: inline <script>"
        assert not EVENT_HANDLER.search(text), f"{template.name}: inline event handler"
        assert "javascript:" not in text.lower(), template.name
        assert "<style" not in text.lower(), f"{template.name}: inline <style> (style-src 'self')"
