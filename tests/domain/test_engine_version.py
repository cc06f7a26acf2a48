"""`ENGINE_VERSION` follows the engine's rules: a change to fills, costs, exits, equity or statistics that is
not recorded here fails, so a stored run computed by older rules is never reused under the same id.

The fingerprint is of the rule modules' code (their syntax trees without docstrings, so comments, docstrings
and formatting do not count). When it changes: if results can change, bump `ENGINE_VERSION` and add the new
fingerprint under the new version; if they cannot (a pure refactor), replace the fingerprint of the current
version and say why in the commit.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest

from neuraltrade.backtest import run_spec
from neuraltrade.backtest.run_spec import ENGINE_VERSION

BACKTEST = Path(run_spec.__file__).parent
#: The modules whose code decides a run's trades, equity and statistics.
RULE_MODULES = (
    "fills.py",
    "broker.py",
    "book.py",
    "fast.py",
    "engine.py",
    "controls.py",
    "market.py",
    "ledger.py",
    "trade.py",
    "statistics.py",
)
#: ENGINE_VERSION -> fingerprint of the rule modules it names.
FINGERPRINTS = {
    "1": "4f594083ca2f880ca38376bdace2de91298df9788a8d833f162c4405e4cab985",
}


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return tree


def fingerprint(folder: Path = BACKTEST, modules: tuple[str, ...] = RULE_MODULES) -> str:
    """SHA-256 of the rule modules' syntax trees, docstrings left out."""
    hasher = hashlib.sha256()
    for name in modules:
        tree = _without_docstrings(ast.parse((folder / name).read_text(encoding="utf-8")))
        hasher.update(name.encode() + b"\0" + ast.dump(tree).encode() + b"\0")
    return hasher.hexdigest()


def test_the_engine_version_names_the_rules_in_force() -> None:
    assert ENGINE_VERSION in FINGERPRINTS, f"ENGINE_VERSION {ENGINE_VERSION!r} has no recorded fingerprint"
    assert fingerprint() == FINGERPRINTS[ENGINE_VERSION], (
        f"the engine's rule modules changed since ENGINE_VERSION {ENGINE_VERSION!r} was recorded: if results can "
        f"change, bump ENGINE_VERSION and record {fingerprint()!r} under it; if not, replace the fingerprint"
    )


def test_a_change_of_code_changes_the_fingerprint_and_a_comment_does_not(tmp_path: Path) -> None:
    rule = "def commission(quantity, price, rate, fixed):\n    return fixed + quantity * price * rate\n"
    (tmp_path / "fills.py").write_text('"""Fills."""\n' + rule)
    before = fingerprint(tmp_path, ("fills.py",))

    (tmp_path / "fills.py").write_text('"""Fills, reworded."""\n# why\n' + rule)
    assert fingerprint(tmp_path, ("fills.py",)) == before

    (tmp_path / "fills.py").write_text(
        rule.replace("fixed + quantity * price * rate", "quantity * price * rate + fixed")
    )
    assert fingerprint(tmp_path, ("fills.py",)) != before


@pytest.mark.parametrize("module", RULE_MODULES)
def test_every_rule_module_exists(module: str) -> None:
    assert (BACKTEST / module).is_file()
