"""The package's layers: every module imports only from its own layer and those below it.

The order is ``lipspeech.LAYERS``, and the tree shows it: from the bottom, the base (``lipspeech/core/``:
stage runtime, stores, media I/O, config, device/seed/threads, git info), then vision and data, the
acoustic features, the models, training, the vocoder, the evaluation, and on top the commands
(``lipspeech/commands/`` and the entry point ``lipspeech/cli.py``). Imports inside functions count too.
docs/layout.md draws the same order.
"""

import ast
import re
from pathlib import Path

import pytest

import lipspeech
from lipspeech import LAYERS

PACKAGE = Path(lipspeech.__file__).parent
ROOT = PACKAGE.parent


def layer_of(module: str) -> int:
    """The layer of ``module``: the one naming it or, longest first, a package holding it (the package root,
    ``lipspeech`` itself, holds nothing: a module at the root that no layer names is in none)."""
    best, where = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            inside = module.startswith(p + ".") and p != "lipspeech"
            if (module == p or inside) and len(p) > best:
                best, where = len(p), i
    assert where >= 0, f"{module}: in no layer (add it to lipspeech.LAYERS)"
    return where


def test_the_tree_is_the_layers():
    # every module and subpackage at the package root is one that LAYERS names, and each that it names is there
    at_root = {f"lipspeech.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"} | \
              {f"lipspeech.{p.name}" for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    named = {p for layer in LAYERS for p in layer} - {"lipspeech"}
    assert at_root == named
    assert sorted(p.stem for p in PACKAGE.glob("*.py")) == ["__init__", "cli"]  # the rest lives in a layer's package


def test_the_layout_page_draws_the_layers_in_order():
    # docs/layout.md's `lipspeech/` part names each layer's packages, bottom first, in the order of LAYERS
    text = (ROOT / "docs" / "layout.md").read_text()
    part = text[text.index("\nlipspeech/"):text.index("\ntests/")]
    names = re.findall(r"^  (\S+)", part, flags=re.M)  # what each entry of the package's tree names
    expect = [p.removeprefix("lipspeech.") + ("/" if (ROOT / p.replace(".", "/")).is_dir() else ".py")
              for layer in LAYERS for p in layer if p != "lipspeech"]
    assert [n for n in names if n in expect] == expect, names


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m == "lipspeech" or m.startswith("lipspeech.")}


def test_no_module_imports_from_a_layer_above_it():
    bad = []
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 50
    for path in modules:
        me = module_name(path)
        for target in imports(path):
            if layer_of(target) > layer_of(me):
                bad.append(f"{me} imports {target}")
    assert not bad, "\n".join(bad)


def _absolute(node: ast.ImportFrom, me: str, package: bool) -> str:
    """The module an ``import from`` names, relative ones resolved against module ``me``."""
    if not node.level:
        return node.module or ""
    parts = me.split(".")[: len(me.split(".")) + int(package) - node.level]
    return ".".join(parts + ([node.module] if node.module else []))


def _attribute_chain(node: ast.Attribute) -> tuple[str, list[str]] | None:
    """``a.b._c`` -> ("a", ["b", "_c"]); None when the chain does not start at a name."""
    chain = [node.attr]
    value = node.value
    while isinstance(value, ast.Attribute):
        chain.insert(0, value.attr)
        value = value.value
    return (value.id, chain) if isinstance(value, ast.Name) else None


def private_imports(path: Path, me: str = "lipspeech.x", package: bool = False) -> list[str]:
    """Private names (``_x``) another lipspeech module's code uses: imported from it (absolute or relative
    import), or reached as an attribute of a lipspeech module imported whole (``speak._load`` after
    ``from lipspeech.commands import speak``, ``lipspeech.commands.speak._load`` after ``import lipspeech.commands.speak``).
    ``me`` is the module at ``path`` (``package``: its ``__init__``), against which relative imports resolve."""
    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__")

    tree = ast.parse(path.read_text())
    found, modules = [], {}  # local name -> the lipspeech module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _absolute(node, me, package)
            if not (node.level or source.startswith("lipspeech")):
                continue
            found += [f"{node.module} {a.name}" for a in node.names if private(a.name)]
            for a in node.names:
                if (PACKAGE.parent / f"{source}.{a.name}".replace(".", "/")).with_suffix(".py").exists() or \
                        (PACKAGE.parent / f"{source}.{a.name}".replace(".", "/") / "__init__.py").exists():
                    modules[a.asname or a.name] = f"{source}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "lipspeech" or a.name.startswith("lipspeech."):
                    modules[a.asname or "lipspeech"] = a.name if a.asname else "lipspeech"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and (chain := _attribute_chain(node)) and chain[0] in modules \
                and any(private(part) for part in chain[1]):
            found.append(f"{modules[chain[0]]} {'.'.join(chain[1])}")
    return sorted(set(found))


def test_modules_share_only_public_names(tmp_path):
    """What one module needs from another has a public name: a private one may change without notice."""
    bad = [f"{module_name(path)} uses {name}" for path in sorted(PACKAGE.rglob("*.py"))
           for name in private_imports(path, module_name(path), path.name == "__init__.py")]
    assert not bad, "\n".join(bad)
    # known answers: the checker sees one, relative or absolute, inside a function too, and one reached
    # through a module imported whole (not an attribute of anything else, not a dunder)
    path = tmp_path / "x.py"
    path.write_text("from .speech import _load\ndef f():\n    from lipspeech.core.media import _x, y\n")
    assert private_imports(path) == ["lipspeech.core.media _x", "speech _load"]
    path.write_text("import lipspeech.core.media\nimport lipspeech.core.store as st\nfrom lipspeech.commands import speak\n"
                    "from lipspeech.data import synth as sy\nfrom lipspeech.commands.speak import load_pipeline\n"
                    "speak._load(); st._w(); lipspeech.core.media._probe; sy.speech._lib; speak.__name__\n"
                    "self._x; load_pipeline._cache; lipspeech.__version__\n")
    assert private_imports(path) == ["lipspeech core.media._probe", "lipspeech.commands.speak _load",
                                     "lipspeech.core.store _w", "lipspeech.data.synth speech._lib"]


def test_the_checker_sees_an_upward_import(tmp_path):
    # known answer: a base module importing the training package is caught
    assert layer_of("lipspeech.core.shards") < layer_of("lipspeech.training.loop")
    assert layer_of("lipspeech") == layer_of("lipspeech.core.store") == 0
    assert layer_of("lipspeech.cli") == layer_of("lipspeech.commands.speak") == len(LAYERS) - 1
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("lipspeech.speak")  # a module at the package root that no layer names
    path = tmp_path / "x.py"
    path.write_text("def f():\n    from lipspeech.training.loop import run_loop\n")
    assert imports(path) == {"lipspeech.training.loop"}


def test_building_the_command_line_loads_no_dependency():
    # every package registers its commands from a module that imports the standard library only,
    # so `lipspeech doctor` starts (and says what to install) on a machine missing them
    import subprocess
    import sys

    code = ("import sys; from lipspeech.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'numpy', 'pyarrow', 'pandas', 'faiss', 'cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _code_lines(node: ast.AST) -> int:
    """Lines of a function less its docstring."""
    body = node.body
    start = body[0].end_lineno + 1 if (isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                                       and isinstance(body[0].value.value, str) and len(body) > 1) else body[0].lineno
    return node.end_lineno - start + 1


def test_functions_and_modules_stay_readable():
    # the package's size rules: no function body over 80 lines, no module over 450
    long_functions, long_modules = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > 450:
            long_modules.append(f"{module_name(path)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _code_lines(node) > 80:
                long_functions.append(f"{module_name(path)}.{node.name}: {_code_lines(node)} lines")
    assert not long_functions and not long_modules, "\n".join(long_functions + long_modules)
