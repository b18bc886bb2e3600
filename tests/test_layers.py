"""The package's layers: every module imports only from its own layer and those below it.

From the bottom: the base (stage runtime, stores, media I/O, config, device/seed/threads,
git info), then the data and vision front end, the acoustic features, the models, training,
the vocoder, the evaluation, and on top the commands. Imports inside functions count too.
"""

import ast
from pathlib import Path

import lipspeech

PACKAGE = Path(lipspeech.__file__).parent
BASE = ("lipspeech", "lipspeech.audit", "lipspeech.config", "lipspeech.media", "lipspeech.runtime",
        "lipspeech.shards", "lipspeech.stagecli", "lipspeech.store", "lipspeech.timing", "lipspeech.livemedia",
        "lipspeech.transcript")
LAYERS = [
    BASE,
    ("lipspeech.vision",),
    ("lipspeech.data",),  # its synthetic corpus generator places faces with the vision landmarks
    ("lipspeech.features",),
    ("lipspeech.models",),
    ("lipspeech.training",),
    ("lipspeech.vocoder",),
    ("lipspeech.evaluation",),
    ("lipspeech.speak", "lipspeech.live", "lipspeech.liveengine", "lipspeech.serve", "lipspeech.servelive",
     "lipspeech.summary", "lipspeech.doctor", "lipspeech.toolcli", "lipspeech.cli"),
]


def layer_of(module: str) -> int:
    best, where = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, where = len(p), i
    assert where >= 0, f"{module}: in no layer (add it to LAYERS)"
    return where


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


def private_imports(path: Path) -> list[str]:
    """Private names (``_x``) imported from another lipspeech module (absolute or relative import)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("lipspeech")):
            found += [f"{node.module} {a.name}" for a in node.names if a.name.startswith("_")
                      and not a.name.startswith("__")]
    return found


def test_modules_share_only_public_names(tmp_path):
    """What one module needs from another has a public name: a private one may change without notice."""
    bad = [f"{module_name(path)} imports {name}" for path in sorted(PACKAGE.rglob("*.py"))
           for name in private_imports(path)]
    assert not bad, "\n".join(bad)
    # known answer: the checker sees one, relative or absolute, inside a function too
    path = tmp_path / "x.py"
    path.write_text("from .speech import _load\ndef f():\n    from lipspeech.media import _x, y\n")
    assert private_imports(path) == ["speech _load", "lipspeech.media _x"]


def test_the_checker_sees_an_upward_import(tmp_path):
    # known answer: a base module importing the training package is caught
    assert layer_of("lipspeech.shards") < layer_of("lipspeech.training.loop")
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
