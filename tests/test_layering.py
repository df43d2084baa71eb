"""Architecture rules: vitviz.core never imports Qt; `import vitviz` stays light."""
import subprocess
from pathlib import Path
import sys


def _run(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_core_imports_no_qt():
    code = (
        "import pkgutil, importlib, sys, vitviz.core\n"
        "for m in pkgutil.walk_packages(vitviz.core.__path__, 'vitviz.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "import vitviz; from PIL import Image\n"
        "vitviz.analyze(Image.new('RGB', (64, 64)), model='vit_b_32', weights='random')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'superqt', 'shiboken6')]\n"
        "assert not bad, bad\n"
    )
    res = _run(code)
    assert res.returncode == 0, res.stderr


def test_import_vitviz_does_not_import_torch():
    res = _run("import sys, vitviz, vitviz.core.api, vitviz.core.models.registry\n"
               "assert 'torch' not in sys.modules")
    assert res.returncode == 0, res.stderr


def test_import_linter_contract():
    lint = Path(sys.executable).with_name("lint-imports")
    res = subprocess.run([str(lint), "--no-cache"], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, res.stdout + res.stderr


def _vitviz_graph():
    import grimp

    graph = grimp.build_graph("vitviz", cache_dir=None)
    mods = [m for m in graph.modules if m.startswith("vitviz")]
    return {m: {i for i in graph.find_modules_directly_imported_by(m) if i.startswith("vitviz")} for m in mods}


def _cycles(edges: dict) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), i.e. the import circles."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for m in sorted(edges):
        if m not in index:
            visit(m)
    return out


def test_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles_in_vitviz():
    assert _cycles(_vitviz_graph()) == []


def _private_imports_across_packages(root: Path) -> list[str]:
    """`from <another package> import _name`: a private name used outside the package that owns it."""
    import ast

    bad = []
    for f in sorted(root.rglob("*.py")):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        pkg = parts[:-1]  # the package this file is in (for __init__.py: the package itself)
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                target = pkg[:len(pkg) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == root.name:
                target = node.module.split(".")
            else:
                continue
            target_pkg = target if (root.parent.joinpath(*target)).is_dir() else target[:-1]
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__") and target_pkg != pkg:
                    bad.append(f"{f}:{node.lineno} {'.'.join(target)}.{alias.name}")
    return bad


def test_no_private_names_imported_across_packages(tmp_path):
    assert _private_imports_across_packages(Path(__file__).resolve().parents[1] / "vitviz") == []
    # and the check catches one
    (tmp_path / "pkg" / "a").mkdir(parents=True)
    (tmp_path / "pkg" / "b").mkdir()
    (tmp_path / "pkg" / "a" / "m.py").write_text("def _hidden(): pass\n")
    (tmp_path / "pkg" / "b" / "n.py").write_text("from ..a.m import _hidden\nfrom .n import _ok\n")
    assert [b.split(" ")[1] for b in _private_imports_across_packages(tmp_path / "pkg")] == ["pkg.a.m._hidden"]


def test_public_functions_show_their_real_signatures_without_a_heavy_import():
    res = _run("import sys, inspect, vitviz\n"
               "assert 'numpy' not in sys.modules and 'torch' not in sys.modules\n"
               "sig = inspect.signature(vitviz.analyze)\n"
               "assert list(sig.parameters)[:3] == ['image', 'model', 'weights'], sig\n"
               "assert 'attention capture' in vitviz.analyze.__doc__\n"
               "assert 'batch_size' in inspect.signature(vitviz.analyze_many).parameters\n"
               "assert {'analyze', 'analyze_many', 'methods', 'get_model'} <= set(dir(vitviz))\n"
               "import vitviz.core.api as api; assert vitviz.analyze is api.analyze\n")
    assert res.returncode == 0, res.stderr
