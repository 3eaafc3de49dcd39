"""docs/menu.md is the menu as it is: regenerate it with `ivr menu render` after a change."""

from __future__ import annotations

from pathlib import Path

from ivr import catalog, menu, menudoc

DOC = Path(__file__).parent.parent / "docs" / "menu.md"


def test_the_committed_menu_document_is_up_to_date() -> None:
    expected = menudoc.render(menu.load(), catalog.load())
    stale = "docs/menu.md is stale: run `ivr menu render`"
    assert DOC.read_text(encoding="utf-8") == expected, stale


def test_the_document_names_every_node_and_both_languages() -> None:
    text = menudoc.render(menu.load(), catalog.load())
    for name in menu.load().nodes:
        assert f"## `{name}`" in text
    assert "cmn-CN: 您的医保卡尾号为{last4}" in text
    assert "en-US: Your card ending in {last4}" in text
