"""The library's two layers stay apart (the layering the *Library reference*, book/api.md, and the
README's layout describe): concept modules never import the experiment layer and carry no
command lines; ``expand`` depends on torch alone; every recipe module's command line is built on
the one shared skeleton (support/experiments/command_line.py)."""

import ast
from pathlib import Path

import pytest

SUPPORT = Path(__file__).resolve().parents[1] / "support"
CONCEPTS = sorted(
    p
    for p in [*SUPPORT.glob("*.py"), *(SUPPORT / "book").glob("*.py")]
    if p.name != "__init__.py"
)
SKELETON = SUPPORT / "experiments" / "command_line.py"
EXPERIMENTS = sorted(
    p
    for p in (SUPPORT / "experiments").glob("*.py")
    if p.name != "__init__.py" and p != SKELETON
)
# the chapter executor is a tool, not an experiment: its command line lives in these two files
TOOLS_WITH_A_COMMAND_LINE = {
    SUPPORT / "book" / "cli.py",
    SUPPORT / "book" / "__main__.py",
}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", CONCEPTS, ids=lambda p: str(p.relative_to(SUPPORT)))
def test_concept_modules_never_import_the_experiment_layer(path):
    bad = sorted(
        n for n in imported_modules(path) if n.startswith("support.experiments")
    )
    assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize(
    "path",
    [p for p in CONCEPTS if p not in TOOLS_WITH_A_COMMAND_LINE],
    ids=lambda p: str(p.relative_to(SUPPORT)),
)
def test_concept_modules_have_no_command_line(path):
    tree = ast.parse(path.read_text())
    assert "argparse" not in imported_modules(path), f"{path.name} parses command lines"
    mains = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Compare)
        and isinstance(n.left, ast.Name)
        and n.left.id == "__name__"
    ]
    assert not mains, f"{path.name} has a __main__ block"


def test_expand_depends_on_torch_alone():
    support_imports = {
        n for n in imported_modules(SUPPORT / "expand.py") if n.startswith("support")
    }
    assert not support_imports, f"expand imports {sorted(support_imports)}"


def test_every_chapter_recipe_module_is_importable_and_has_a_command_line():
    import importlib

    assert EXPERIMENTS
    for path in EXPERIMENTS:
        module = importlib.import_module(f"support.experiments.{path.stem}")
        assert callable(getattr(module, "main", None)), f"{path.name} has no main()"


# Recipe modules still building their own command line (they are being moved onto the skeleton).
OWN_SKELETON = {"cifar_expanded.py", "linear_overparam.py"}


@pytest.mark.parametrize(
    "path",
    [p for p in EXPERIMENTS if p.name not in OWN_SKELETON],
    ids=lambda p: p.name,
)
def test_recipe_command_lines_use_the_shared_skeleton(path):
    source = path.read_text()
    assert "support.experiments.command_line" in imported_modules(path), path.name
    assert "ArgumentParser(" not in source, f"{path.name} builds its own parser"
