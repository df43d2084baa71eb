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
