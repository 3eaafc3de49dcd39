"""The menu as a document: every node, its prompts in both languages, its keys and targets."""

from __future__ import annotations

from .catalog import Catalog
from .menu import Menu, Node
from .state import LANGS

KIND_NAMES = {
    "announce": "says, then goes on",
    "menu": "a menu: one key",
    "list": "account records, one at a time",
    "info": "information, one part at a time",
    "id_entry": "ID number entry (ends with #, `*` for X)",
    "pin_entry": "PIN entry (6 digits)",
    "transfer": "transfer to an agent",
    "record": "a voice message",
    "rating": "a one-key rating",
    "hangup": "goodbye: the call ends",
}
ACTION_NAMES = {
    "@repeat": "repeat",
    "@back": "back to the previous menu",
    "@next": "next",
    "@previous": "previous",
    "@language": "switch Mandarin / English",
    "@confirm": "confirm",
    "@cancel": "cancel",
}


def render(menu: Menu, catalog: Catalog) -> str:
    """The whole menu as Markdown (what `ivr menu render` writes to docs/menu.md)."""
    lines = [
        "# The menu",
        "",
        "Generated from `ivr/menu.toml` and `prompts/*.toml` by `ivr menu render`; "
        "do not edit by hand (a test fails when this file is stale).",
        "",
        f"The call starts at `{menu.start}`. Silence {menu.max_silence} times in a row ends "
        f"the call; {menu.max_wrong} wrong keys in a row go to `{menu.agent}` "
        f"(`{menu.goodbye}` when no agent answers). Nodes marked *authenticated* send the "
        f"caller through `{menu.authenticate}` and `{menu.pin}` first.",
        "",
    ]
    for node in menu.nodes.values():
        lines += _node(menu, catalog, node)
    return "\n".join(lines).rstrip() + "\n"


def _node(menu: Menu, catalog: Catalog, node: Node) -> list[str]:
    title = f"## `{node.name}`: {KIND_NAMES[node.kind]}"
    out = [title + (" (authenticated)" if node.auth else ""), ""]
    if node.source:
        out.append(f"Reads the caller's `{node.source}` from the account service.")
        out.append("")
    for key in node.prompt_keys():
        out.append(f"- `{key}`")
        for lang in LANGS:
            text = catalog.prompt(key, lang).text
            out.append(f"  - {lang}: {text}")
    if node.prompt_keys():
        out.append("")
    moves = [(k, _target(t)) for k, t in sorted(node.keys.items())]
    moves += [(f"({field})", f"`{value}`") for field, value in _fields(node)]
    if moves:
        out += ["| key | leads to |", "|---|---|"]
        out += [f"| `{k}` | {t} |" if not k.startswith("(") else f"| {k} | {t} |" for k, t in moves]
        out.append("")
    return out


def _target(target: str) -> str:
    return ACTION_NAMES.get(target, target) if target.startswith("@") else f"`{target}`"


def _fields(node: Node) -> list[tuple[str, str]]:
    named = {"next": node.next, "closed": node.closed, "no agents": node.none,
             "busy": node.busy, "after the agent": node.after}  # fmt: skip
    out = [(name, value) for name, value in named.items() if value]
    out += [(f"key {key}", f"rating: {value}") for key, value in node.ratings.items()]
    return out
