"""Load the call flow table (`menu.toml`) into validated, frozen dataclasses."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Any

KINDS = (
    "announce", "menu", "list", "info", "id_entry", "pin_entry", "transfer", "record", "rating",
    "hangup",
)  # fmt: skip
ACTIONS = ("@repeat", "@back", "@next", "@previous", "@language", "@confirm", "@cancel")
KEYS = frozenset("0123456789*#")
ENTRY_KINDS = ("id_entry", "pin_entry")
PAGED_KINDS = ("list", "info")  # one item at a time, `@next` / `@previous`
PASSIVE_KINDS = ("announce", "hangup", "transfer", "record")  # take no keys


class MenuError(ValueError):
    """The menu table is inconsistent; the message names the node and the field."""


@dataclass(frozen=True, slots=True)
class Node:
    """One place in the call flow."""

    name: str
    kind: str
    prompt: str | None = None
    short: str | None = None
    also: tuple[str, ...] = ()
    say: tuple[str, ...] = ()
    next: str | None = None
    keys: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    auth: bool = False
    source: str | None = None
    item: str | None = None
    empty: str | None = None
    timeout: int = 6
    max_silence: int | None = None  # overrides the menu's
    parts: tuple[str, ...] = ()  # info: the prompts read one at a time
    require: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    refused: str | None = None  # said (then back) when the data fails `require`
    act: str | None = None  # what `@confirm` asks the account service to do
    outcomes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    cancelled: str | None = None  # said (then back) on `@cancel`
    ratings: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    closed: str | None = None  # transfer: where to go outside the agents' hours
    none: str | None = None  # transfer: where to go when no agents are configured at all
    busy: str | None = None  # transfer: where to go when agents are busy or do not answer
    after: str | None = None  # transfer: where to go when the agent call ends
    max_length: int = 120  # record: seconds
    context: tuple[str, ...] = ()  # values from outside the call the prompt uses: "hours"

    def prompt_keys(self) -> tuple[str, ...]:
        """Every prompt key this node can say."""
        named = (
            self.prompt, self.short, self.item, self.empty, self.refused, self.cancelled,
            *self.also, *self.say, *self.parts, *self.outcomes.values(),
        )  # fmt: skip
        return tuple(k for k in named if k)


@dataclass(frozen=True, slots=True)
class Menu:
    """The whole call flow: nodes by name, plus the special places and limits."""

    nodes: Mapping[str, Node]
    start: str
    authenticate: str
    pin: str
    goodbye: str
    agent: str
    max_silence: int
    max_wrong: int

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def targets(self, node: Node) -> set[str]:
        """The nodes one step away from `node` (actions resolved where they are static)."""
        out = {t for t in node.keys.values() if not t.startswith("@")}
        out |= {t for t in (node.next, node.closed, node.none, node.busy, node.after) if t}
        if node.auth:
            out.add(self.authenticate)
        if node.kind == "id_entry":
            out.add(self.pin)
        return out

    def prompt_keys(self) -> set[str]:
        """Every prompt key any node can say."""
        return {k for n in self.nodes.values() for k in n.prompt_keys()}


def load(text: str | None = None) -> Menu:
    """Parse and validate a menu table (the packaged `menu.toml` by default)."""
    if text is None:
        text = resources.files("ivr").joinpath("menu.toml").read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MenuError(f"menu.toml is not valid TOML: {exc}") from None
    defaults = raw.get("defaults", {})
    common = _keys("defaults", defaults.get("keys", {}))
    nodes = {
        name: _node(name, spec, common, int(defaults.get("timeout", 6)))
        for name, spec in raw.get("nodes", {}).items()
    }
    menu = Menu(
        nodes=MappingProxyType(nodes),
        start=raw.get("start", ""),
        authenticate=raw.get("authenticate", ""),
        pin=raw.get("pin", ""),
        goodbye=raw.get("goodbye", ""),
        agent=raw.get("agent", ""),
        max_silence=int(defaults.get("max_silence", 3)),
        max_wrong=int(defaults.get("max_wrong", 3)),
    )
    validate(menu)
    return menu


def _keys(where: str, keys: Any) -> dict[str, str]:
    if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
        raise MenuError(f"{where}: keys must be a table of key = target")
    bad = [k for k in keys if k not in KEYS]
    if bad:
        raise MenuError(f"{where}: {bad[0]!r} is not a telephone key")
    return dict(keys)


def _node(name: str, spec: Any, common: dict[str, str], timeout: int) -> Node:
    if not isinstance(spec, dict):
        raise MenuError(f"node {name}: must be a table")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise MenuError(f"node {name}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
    known = set(Node.__slots__) - {"name"}
    unknown = set(spec) - known
    if unknown:
        raise MenuError(f"node {name}: unknown field {min(unknown)!r}")
    interactive = kind not in PASSIVE_KINDS
    keys = common | _keys(f"node {name}", spec.get("keys", {})) if interactive else {}
    tables = {f: _table(name, f, spec.get(f, {})) for f in ("require", "outcomes", "ratings")}
    return Node(
        name=name,
        kind=kind,
        prompt=spec.get("prompt"),
        short=spec.get("short"),
        also=tuple(spec.get("also", ())),
        say=tuple(spec.get("say", ())),
        next=spec.get("next"),
        keys=MappingProxyType(keys),
        auth=bool(spec.get("auth", False)),
        source=spec.get("source"),
        item=spec.get("item"),
        empty=spec.get("empty"),
        timeout=int(spec.get("timeout", timeout)),
        max_silence=spec.get("max_silence"),
        parts=tuple(spec.get("parts", ())),
        require=MappingProxyType(tables["require"]),
        refused=spec.get("refused"),
        act=spec.get("act"),
        outcomes=MappingProxyType(tables["outcomes"]),
        cancelled=spec.get("cancelled"),
        ratings=MappingProxyType(tables["ratings"]),
        closed=spec.get("closed"),
        none=spec.get("none"),
        busy=spec.get("busy"),
        after=spec.get("after"),
        max_length=int(spec.get("max_length", 120)),
        context=tuple(spec.get("context", ())),
    )


def _table(node: str, name: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise MenuError(f"node {node}: {name} must be a table of text")
    return dict(value)


def validate(menu: Menu) -> None:
    """Raise MenuError unless every target exists, every node is reachable and none traps."""
    for role in ("start", "authenticate", "pin", "goodbye", "agent"):
        if getattr(menu, role) not in menu.nodes:
            raise MenuError(f"{role}: no node named {getattr(menu, role)!r}")
    for node in menu.nodes.values():
        where = f"node {node.name}"
        for target in node.keys.values():
            if target.startswith("@"):
                if target not in ACTIONS:
                    raise MenuError(f"{where}: unknown action {target}")
            elif target not in menu.nodes:
                raise MenuError(f"{where}: key leads to missing node {target!r}")
        for field_ in ("next", "closed", "none", "busy", "after"):
            target = getattr(node, field_)
            if target is not None and target not in menu.nodes:
                raise MenuError(f"{where}: `{field_}` names missing node {target!r}")
        if node.kind in ("announce", "record", "rating") and not node.next:
            raise MenuError(f"{where}: a {node.kind} needs `next`")
        if node.kind in ("menu", "list", "info", "rating", *ENTRY_KINDS) and not (
            node.prompt and node.short
        ):
            raise MenuError(f"{where}: a {node.kind} needs `prompt` and `short`")
        if node.kind == "list" and not (node.source and node.item and node.empty):
            raise MenuError(f"{where}: a list needs `source`, `item` and `empty`")
        if node.kind == "info" and not node.parts:
            raise MenuError(f"{where}: an info needs `parts`")
        if node.kind == "rating" and not node.ratings:
            raise MenuError(f"{where}: a rating needs `ratings`")
        if node.kind in ("announce", "hangup", "record") and not node.say:
            raise MenuError(f"{where}: an {node.kind} needs `say`")
        if node.kind == "transfer" and not (node.say and node.closed and node.none and node.busy):
            raise MenuError(f"{where}: a transfer needs `say`, `closed`, `none` and `busy`")
        if set(node.context) - {"hours"}:
            raise MenuError(f"{where}: `context` may name only hours")
        if node.require and not (node.source and node.refused):
            raise MenuError(f"{where}: `require` needs `source` and `refused`")
        actions = set(node.keys.values())
        if "@confirm" in actions and not (node.act and node.outcomes):
            raise MenuError(f"{where}: `@confirm` needs `act` and `outcomes`")
        if "@cancel" in actions and not node.cancelled:
            raise MenuError(f"{where}: `@cancel` needs `cancelled`")
        if node.kind in ("menu", "list", "info") and not actions & {"@back", "@repeat"}:
            raise MenuError(f"{where}: no way back or to repeat")
    if menu[menu.authenticate].kind != "id_entry" or menu[menu.pin].kind != "pin_entry":
        raise MenuError("authenticate / pin: must be an id_entry / a pin_entry node")
    seen: set[str] = set()
    todo = [menu.start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(menu.targets(menu[name]))
    seen.add(menu.goodbye)  # reached by silence from anywhere
    unreachable = sorted(set(menu.nodes) - seen)
    if unreachable:
        raise MenuError(f"node {unreachable[0]}: unreachable from {menu.start}")
