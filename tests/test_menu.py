"""The call-flow table (ivr/menu.toml): it loads, it is whole, no node traps the caller,
every prompt it names exists in every language, and broken tables are refused by name."""

from __future__ import annotations

from importlib import resources

import pytest

from ivr import catalog, machine, menu
from ivr.menu import Menu, MenuError, Node
from ivr.state import LANGS, CallState, Fetch, Fetched, Keys, Step, Transfer

INTERACTIVE = ("menu", "list", "info", "rating", "id_entry", "pin_entry")
TEXT = resources.files("ivr").joinpath("menu.toml").read_text(encoding="utf-8")
TRANSACTIONS = [
    {"time": "2026-11-20T10:15:00+08:00", "place": "北京协和医院", "category": "outpatient",
     "total": "500.00", "pooled_fund": "300.00", "personal_account": "150.00", "cash": "50.00"}
]  # fmt: skip
CONTRIBUTIONS = [
    {"month": "2026-10", "employer": "北京某某科技有限公司", "base": "8000.00",
     "personal_account_credit": "320.00", "status": "paid"}
]  # fmt: skip
DATA = {
    "transactions": TRANSACTIONS,
    "contributions": CONTRIBUTIONS,
    "balance": {"amount": "1.00"},
    "card": {"last4": "3456", "status": "active"},
}
# where the caller is told no agent can answer: `0` there repeats instead of looping back
NO_AGENT_NODES = {
    name for n in menu.load().nodes.values() if n.kind == "transfer" for name in (n.closed, n.none)
}
INTERACTIVE_NODES = sorted(n.name for n in menu.load().nodes.values() if n.kind in INTERACTIVE)


@pytest.fixture(scope="module")
def flow() -> Menu:
    return menu.load()


def interactive(flow: Menu) -> list[Node]:
    return [n for n in flow.nodes.values() if n.kind in INTERACTIVE]


def home(flow: Menu) -> str:
    start = flow[flow.start]
    return start.next if start.kind == "announce" and start.next else start.name


def moves(flow: Menu, node: Node) -> set[str]:
    """Where a caller can get from `node`, with the actions resolved as the engine resolves them
    (`@back` with nothing to go back to leads home; the others stay on the node), plus
    silence and the end of an agent call."""
    out = {t for t in node.keys.values() if not t.startswith("@")}
    if any(t == "@back" for t in node.keys.values()):
        out.add(home(flow))
    out |= {t for t in (node.next, node.closed, node.none, node.busy, node.after) if t}
    if node.auth:
        out.add(flow.authenticate)
    if node.kind == "id_entry":
        out.add(flow.pin)
    if node.kind in INTERACTIVE:
        out.add(flow.goodbye)  # silence, max_silence times in a row
    if node.kind == "transfer":
        out |= {home(flow)}  # back from the busy / closed menus
    if node.kind == "record":
        out.add(home(flow))  # nothing recorded: back
    return out


def reachable(flow: Menu, start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(moves(flow, flow[name]))
    return seen


# --- the packaged table -------------------------------------------------------------


def test_the_packaged_menu_loads_with_its_special_places(flow: Menu) -> None:
    assert flow.start == "welcome"
    assert home(flow) == "main"
    assert flow[flow.authenticate].kind == "id_entry"
    assert flow[flow.pin].kind == "pin_entry"
    assert flow[flow.agent].kind == "transfer"
    assert flow[flow.goodbye].kind == "hangup"
    assert (flow.max_silence, flow.max_wrong) == (3, 3)


def test_the_main_menu_keys_match_the_spec(flow: Menu) -> None:
    keys = dict(flow["main"].keys)
    assert keys == {
        "1": "balance", "2": "contributions", "3": "cards", "4": "info",
        "9": "@language", "0": "agent", "#": "@repeat", "*": "@repeat",
    }  # fmt: skip


def test_every_key_leads_to_a_node_or_a_known_action(flow: Menu) -> None:
    for node in flow.nodes.values():
        for key, target in node.keys.items():
            assert key in menu.KEYS, (node.name, key)
            assert target in flow.nodes or target in menu.ACTIONS, (node.name, key, target)
        if node.next is not None:
            assert node.next in flow.nodes, node.name


def test_every_node_is_reachable_from_the_start(flow: Menu) -> None:
    assert reachable(flow, flow.start) == set(flow.nodes)


@pytest.mark.parametrize("name", INTERACTIVE_NODES)
def test_no_interactive_node_traps_the_caller(flow: Menu, name: str) -> None:
    node = flow[name]
    if name not in NO_AGENT_NODES:
        assert node.keys.get("0") == flow.agent, f"{name}: 0 must reach an agent"
    assert home(flow) in reachable(flow, name), f"{name}: no way back to the main menu"
    assert "@repeat" in node.keys.values(), f"{name}: no way to hear it again"


def settle(flow: Menu, step: Step) -> Step:
    """Run the effects a key asks for with plausible data, as the web layer would."""
    while isinstance(step.effect, Fetch):
        step = machine.advance(flow, step.state, Fetched(step.effect, DATA[step.effect.what]))
    return step


@pytest.mark.parametrize("name", INTERACTIVE_NODES)
def test_from_every_interactive_node_the_caller_gets_home_and_to_an_agent(
    flow: Menu, name: str
) -> None:
    state = CallState(node=name, account=42, stack=("main",), id_digest="d" * 64)
    if name not in NO_AGENT_NODES:
        to_agent = settle(flow, machine.advance(flow, state, Keys("0")))
        assert to_agent.reply is not None and to_agent.reply.then == Transfer()
        assert to_agent.state.node == flow.agent

    state, presses = CallState(node=name, account=42, id_digest="d" * 64), 0
    while state.node != "main":
        presses += 1
        assert presses <= 3, f"{name}: `*` does not lead back to the main menu"
        state = settle(flow, machine.advance(flow, state, Keys("*"))).state


# --- prompts named by the menu and the engine ---------------------------------------------


def test_every_prompt_the_menu_or_the_engine_names_exists_in_both_languages(flow: Menu) -> None:
    prompts = catalog.load()
    needed = flow.prompt_keys() | set(machine.ENGINE_PROMPTS)
    needed |= {f"category.{c}" for c in ("outpatient", "inpatient", "pharmacy", "deposit", "other")}
    assert {"main.menu", "main.other_language", "goodbye", "auth.id"} <= needed
    for lang in LANGS:
        missing = sorted(k for k in needed if k not in prompts.prompts[lang])
        assert missing == [], f"{lang} lacks {missing}"


# --- broken tables ------------------------------------------------------------------


def changed(old: str, new: str) -> str:
    assert old in TEXT, old
    return TEXT.replace(old, new, 1)


BROKEN = [
    pytest.param(
        changed('keys = { "1" = "transactions" }', 'keys = { "1" = "nowhere" }'),
        "balance", "nowhere", id="missing-target",
    ),
    pytest.param(
        changed('[nodes.cards]\nkind = "menu"', '[nodes.cards]\nkind = "teleport"'),
        "cards", "teleport", id="unknown-kind",
    ),
    pytest.param(
        changed('[nodes.info]\nkind', '[nodes.info]\ncolour = "blue"\nkind'),
        "info", "colour", id="unknown-field",
    ),
    pytest.param(
        changed('keys = { "1" = "transactions" }', 'keys = { "A" = "transactions" }'),
        "balance", "'A'", id="bad-key",
    ),
    pytest.param(
        changed('keys = { "1" = "transactions" }', 'keys = { "12" = "transactions" }'),
        "balance", "'12'", id="two-keys",
    ),
    pytest.param(
        TEXT + '\n[nodes.orphan]\nkind = "announce"\nsay = ["welcome"]\nnext = "main"\n',
        "orphan", "unreachable", id="unreachable",
    ),
    pytest.param(
        changed('say = ["welcome"]\nnext = "main"', 'say = ["welcome"]'),
        "welcome", "next", id="announce-without-next",
    ),
    pytest.param(
        changed('busy = "agent.busy"\n', ""), "agent", "busy", id="transfer-without-busy",
    ),
    pytest.param(
        changed('act = "report_card_lost"\n', ""), "card.lost", "act", id="confirm-without-act",
    ),
    pytest.param(
        changed('parts = ["info.pays.1", "info.pays.2", "info.pays.3"]\n', ""),
        "info.pays", "parts", id="info-without-parts",
    ),
    pytest.param(
        changed('"4" = "info",', '"4" = "@teleport",'), "main", "@teleport", id="unknown-action",
    ),
    pytest.param(
        changed('prompt = "list.options"\n', ""),
        "transactions", "prompt", id="list-without-prompt",
    ),
]


@pytest.mark.parametrize(("text", "node", "detail"), BROKEN)
def test_a_broken_table_is_refused_naming_the_node(text: str, node: str, detail: str) -> None:
    with pytest.raises(MenuError) as caught:
        menu.load(text)
    message = str(caught.value)
    assert node in message.split(":")[0].split(), message
    assert detail in message


def test_a_role_naming_a_missing_node_is_refused() -> None:
    with pytest.raises(MenuError, match="agent: no node named 'operator'"):
        menu.load(changed('agent = "agent"', 'agent = "operator"'))


def test_text_that_is_not_toml_is_refused() -> None:
    with pytest.raises(MenuError, match="not valid TOML"):
        menu.load(TEXT + "\n[nodes.main\n")


def test_the_unchanged_text_loads_the_same_menu(flow: Menu) -> None:
    # the broken tables above differ from a table that loads by one edit only
    assert menu.load(TEXT) == flow
