"""Demo accounts (public demo data, `demo_accounts.json`): call the hotline and try them.

| ID number            | PIN      | name | what to try                                                   |
|----------------------|----------|------|---------------------------------------------------------------|
| `11010519491231002X` | `135790` | 张三   | balance 1234.56, 7 transactions, 8 contributions; key * for X |
| `440305199003151236` | `246810` | 李四   | balance 5820.30, 2 transactions, 3 contributions              |
| `310104198507084566` | `112358` | 王五   | card already suspended (report it lost: already)              |
| `110108200104057895` | `080808` | 赵六   | balance 0.00, no transactions or contributions, no phone      |
"""

from __future__ import annotations

import json
from importlib import resources

from .store import AccountStore

DEMO_FILE = "demo_accounts.json"


def load_demo(store: AccountStore) -> int:
    """Import (upsert) the demo accounts into `store`; the number imported."""
    text = resources.files(__package__).joinpath(DEMO_FILE).read_text(encoding="utf-8")
    return store.import_data(json.loads(text))
