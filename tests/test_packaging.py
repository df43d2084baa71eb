"""Installing vitviz like an application: the wheel and sdist, resources inside them, an install into a
fresh venv that starts and analyses, the icon, the Linux desktop files, the PyInstaller recipe."""
from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import types
import zipfile
from pathlib import Path

import pytest

from vitviz.core import resources as res

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
RESOURCES = ROOT / "resources"
LINUX = ROOT / "packaging" / "linux"
DESKTOP = LINUX / "vitviz.desktop"
METAINFO = LINUX / "io.github.vitviz.vitviz.metainfo.xml"
SPEC = ROOT / "packaging" / "pyinstaller" / "vitviz.spec"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
NOT_IN_WHEEL = ("screenshots",)  # resources/ folders the running app does not need


def runtime_resources() -> list[str]:
    """Files under resources/ the running app may need, relative to it (posix)."""
    return sorted(p.relative_to(RESOURCES).as_posix() for p in RESOURCES.rglob("*")
                  if p.is_file() and p.relative_to(RESOURCES).parts[0] not in NOT_IN_WHEEL
                  and p.name != ".DS_Store" and "__pycache__" not in p.parts)


def smoke_model() -> tuple[str, str, bool]:
    """(model, weights, trained) for the installed-app checks: the bundled demo ViT when its weights
    are in resources/ (it reads them from the installed package), else a random ViT-B/32."""
    if (RESOURCES / "demo" / "demo_vit.safetensors").is_file():
        return "demo_vit", "pretrained", True
    return "vit_b_32", "random", False


def clean_env(tmp_path: Path) -> dict[str, str]:
    """An environment for a child vitviz: offscreen, no real settings or torch hub cache touched."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "config"),
               TORCH_HOME=str(tmp_path / "torch-home"), PYTHONDONTWRITEBYTECODE="1")
    return env


# -- resources -------------------------------------------------------------------------------------
def test_resource_dir_finds_samples_and_icons():
    assert res.sample_images(), "no sample images found"
    assert (res.resource_dir() / "icons" / "vitviz.svg").is_file()


def test_resource_dir_in_a_frozen_bundle(tmp_path, monkeypatch):
    bundled = tmp_path / "vitviz" / "resources"
    (bundled / "samples").mkdir(parents=True)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert res.resource_dir() == bundled


def test_resource_dir_prefers_the_packaged_copy(tmp_path, monkeypatch):
    packaged = tmp_path / "vitviz" / "resources"
    packaged.mkdir(parents=True)
    monkeypatch.setattr(res.resources, "files", lambda name: tmp_path / name)
    assert res.resource_dir() == packaged


# -- icon ------------------------------------------------------------------------------------------
def test_icon_files_rendered_at_every_size():
    from PIL import Image

    icons = RESOURCES / "icons"
    for size in ICON_SIZES:
        with Image.open(icons / f"vitviz-{size}.png") as im:
            assert im.size == (size, size) and im.mode == "RGBA"
            assert im.getchannel("A").getextrema()[1] == 255  # drawn, not blank
    with Image.open(icons / "vitviz.ico") as ico:
        assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= set(ico.info["sizes"])
    with Image.open(icons / "vitviz.icns") as icns:
        assert (512, 512, 2) in icns.info["sizes"]
    files = res.app_icon_files()
    assert [p.name for p in files] == [f"vitviz-{s}.png" for s in ICON_SIZES] + ["vitviz.svg"]


@pytest.mark.gui
def test_icon_svg_masters_render():
    from PySide6 import QtGui, QtSvg

    _app = QtGui.QGuiApplication.instance() or QtGui.QGuiApplication([])  # noqa: F841
    for name in ("vitviz.svg", "vitviz-small.svg"):
        renderer = QtSvg.QSvgRenderer(str(RESOURCES / "icons" / name))
        assert renderer.isValid(), name
        assert renderer.defaultSize().width() == renderer.defaultSize().height()


# -- Linux desktop integration ----------------------------------------------------------------------
def desktop_entry() -> configparser.SectionProxy:
    cp = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    cp.optionxform = str  # keys are case-sensitive
    cp.read(DESKTOP, encoding="utf-8")
    return cp["Desktop Entry"]


def test_desktop_entry_matches_the_app():
    entry = desktop_entry()
    assert entry["Exec"] == "vitviz %F"
    assert entry["Icon"] == "vitviz" and (RESOURCES / "icons" / "vitviz.svg").is_file()
    # QGuiApplication.setDesktopFileName("vitviz") in vitviz/gui/app.py: the window's class
    assert entry["StartupWMClass"] == "vitviz" == DESKTOP.stem
    assert 'setDesktopFileName("vitviz")' in (ROOT / "vitviz" / "gui" / "app.py").read_text()
    types_ = entry["MimeType"].rstrip(";").split(";")
    assert {"image/png", "image/jpeg"} <= set(types_)
    # every type the desktop offers is one the app's Open dialog lists
    from vitviz.gui.main_window import IMAGE_FILTER  # noqa: PLC0415

    for mime in types_:
        assert mime.split("/")[1].replace("jpeg", "jpg") in IMAGE_FILTER, mime


def test_metainfo_agrees_with_the_project():
    import xml.etree.ElementTree as ET

    root = ET.parse(METAINFO).getroot()
    assert root.findtext("id") == METAINFO.name.removesuffix(".metainfo.xml")
    assert root.findtext("launchable") == DESKTOP.name
    assert root.findtext("project_license") == PYPROJECT["project"]["license"]
    assert root.find("releases/release").get("version") == VERSION
    shots = [el.text for el in root.iter("image")]
    assert shots, "no screenshot"
    for url in shots:
        name = url.rsplit("/resources/screenshots/", 1)[-1]
        assert (RESOURCES / "screenshots" / name).is_file(), f"{url} is not in resources/screenshots"
    desktop_types = set(desktop_entry()["MimeType"].rstrip(";").split(";"))
    assert {el.text for el in root.iter("mediatype")} == desktop_types


def _validator(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (Debian: apt-get install "
                    f"{'desktop-file-utils' if tool == 'desktop-file-validate' else 'appstream'}); "
                    "packaging/dev.sh test installs it under CI")
    return path


def test_desktop_file_validates():
    out = subprocess.run([_validator("desktop-file-validate"), str(DESKTOP)], capture_output=True, text=True)
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr


def test_metainfo_validates():
    out = subprocess.run([_validator("appstreamcli"), "validate", "--no-net", "--pedantic", str(METAINFO)],
                         capture_output=True, text=True)
    # infos are fine (an older appstreamcli does not know <developer>); warnings and errors are not
    assert out.returncode == 0, out.stdout + out.stderr
    assert not re.search(r"^[WE]: ", out.stdout, re.M), out.stdout


def test_install_desktop_script(tmp_path):
    script = LINUX / "install-desktop.sh"
    env = dict(os.environ, PATH="/usr/bin:/bin")
    subprocess.run(["sh", str(script), "--prefix", str(tmp_path), "--exec", "/opt/my apps/vitviz"],
                   check=True, capture_output=True, env=env)
    share = tmp_path / "share"
    installed = (share / "applications" / "vitviz.desktop").read_text()
    assert 'Exec="/opt/my apps/vitviz" %F' in installed
    assert (share / "metainfo" / METAINFO.name).is_file()
    for size in ICON_SIZES:
        assert (share / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "vitviz.png").is_file()
    subprocess.run(["sh", str(script), "--prefix", str(tmp_path), "--uninstall"], check=True,
                   capture_output=True, env=env)
    assert not (share / "applications" / "vitviz.desktop").exists()


# -- wheel and sdist --------------------------------------------------------------------------------
def _source_files() -> list[str]:
    """What a clean checkout of this tree holds (tracked and new, not ignored)."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                             capture_output=True, check=True)
        return [f for f in out.stdout.decode().split("\0") if f and (ROOT / f).is_file()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        skip = {".git", ".venv", "build", "dist", "__pycache__", ".hypothesis", ".torch-home-unused"}
        return [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*")
                if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]


def _pep517(hook: str, src: Path, out: Path) -> Path:
    """Run a setuptools build hook in a child (as `python -m build --no-isolation` would)."""
    code = f"from setuptools import build_meta as b; print(b.{hook}({str(out)!r}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """sdist built from a copy of this tree, and the wheel built from that sdist."""
    tmp = tmp_path_factory.mktemp("dists")
    src = tmp / "src"
    for rel in _source_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    sdist = _pep517("build_sdist", src, tmp / "dist")
    with tarfile.open(sdist) as tf:
        if hasattr(tarfile, "data_filter"):
            tf.extractall(tmp / "unpacked", filter="data")
        else:
            tf.extractall(tmp / "unpacked")
    wheel = _pep517("build_wheel", tmp / "unpacked" / sdist.name.removesuffix(".tar.gz"), tmp / "dist")
    return types.SimpleNamespace(sdist=sdist, wheel=wheel, src=src)


def test_wheel_carries_the_package_and_its_resources(dists):
    assert dists.wheel.name == f"vitviz-{VERSION}-py3-none-any.whl"
    names = set(zipfile.ZipFile(dists.wheel).namelist())
    packaged = sorted(n.removeprefix("vitviz/resources/") for n in names
                      if n.startswith("vitviz/resources/"))
    assert packaged == runtime_resources()
    assert any(re.fullmatch(r"vitviz/resources/samples/.+\.png", n) for n in names)
    assert {f"vitviz/resources/icons/vitviz{s}" for s in (".svg", ".ico", ".icns", "-256.png")} <= names
    demo = [p for p in runtime_resources() if p.startswith("demo/")]
    assert all(f"vitviz/resources/{p}" in names for p in demo)
    modules = {p.relative_to(dists.src).as_posix() for p in (dists.src / "vitviz").rglob("*.py")}
    assert modules <= names, f"missing modules: {sorted(modules - names)}"
    assert not [n for n in names if n.startswith(("tests/", "resources/", "packaging/"))
                or "screenshots" in n or "__pycache__" in n]


def test_wheel_metadata_and_entry_points(dists):
    zf = zipfile.ZipFile(dists.wheel)
    info = f"vitviz-{VERSION}.dist-info"
    meta = zf.read(f"{info}/METADATA").decode()
    assert f"\nVersion: {VERSION}\n" in meta
    assert "Requires-Dist: torch" in meta
    eps = configparser.ConfigParser()
    eps.read_string(zf.read(f"{info}/entry_points.txt").decode())
    assert eps["gui_scripts"]["vitviz"] == "vitviz.__main__:main"
    assert eps["console_scripts"]["vitviz-cli"] == "vitviz.__main__:main"


def test_sdist_has_what_a_rebuild_needs(dists):
    base = dists.sdist.name.removesuffix(".tar.gz")
    with tarfile.open(dists.sdist) as tf:
        names = {n.removeprefix(base + "/") for n in tf.getnames()}
    expected = {"pyproject.toml", "README.md"}
    expected |= {f"resources/{p}" for p in runtime_resources()}
    assert expected <= names, sorted(expected - names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


@pytest.fixture(scope="module")
def installed(dists, tmp_path_factory):
    """The wheel installed into a fresh venv that sees this venv's packages (torch, Qt) through a
    .pth file, so nothing is downloaded; vitviz itself comes from the wheel only."""
    tmp = tmp_path_factory.mktemp("venv")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    py = bindir / ("python.exe" if os.name == "nt" else "python")
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    import sysconfig

    Path(site, "_dev_venv.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                    "--no-index", str(dists.wheel)], check=True, capture_output=True)
    return types.SimpleNamespace(python=py, bin=bindir, site=Path(site), tmp=tmp)


def test_installed_entry_points_report_the_version(installed, tmp_path):
    env = clean_env(tmp_path)
    for cmd in ([str(installed.bin / "vitviz"), "--version"], [str(installed.bin / "vitviz-cli"), "--version"],
                [str(installed.python), "-m", "vitviz", "--version"]):
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        assert out.returncode == 0 and out.stdout.strip() == f"vitviz {VERSION}", (cmd, out)


def test_installed_package_analyses_a_bundled_sample(installed, tmp_path):
    model, weights, trained = smoke_model()
    code = (
        "import vitviz, json\n"
        "from vitviz.core.resources import resource_dir, sample_images\n"
        f"a = vitviz.analyze(sample_images()[0], model={model!r}, weights={weights!r})\n"
        "print(json.dumps({'file': vitviz.__file__, 'resources': str(resource_dir()),\n"
        "    'samples': len(sample_images()), 'family': a.family, 'trained': a.trained}))\n")
    out = subprocess.run([str(installed.python), "-c", code], capture_output=True, text=True,
                         env=clean_env(tmp_path), cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(got["file"]).is_relative_to(installed.site)  # the wheel, not this checkout
    assert got["resources"] == str(installed.site / "vitviz" / "resources")
    assert got["samples"] == len(res.sample_images()) and got["family"] == "vit"
    assert got["trained"] is trained


@pytest.mark.gui
def test_installed_app_opens_images_and_steps_through_them(installed, tmp_path):
    """`vitviz A B` from the installed package: A is analysed and shown, B is next (Alt+Right)."""
    a, b = (str(p) for p in res.sample_images()[:2])
    model, weights, trained = smoke_model()
    shot = tmp_path / "window.png"
    out = subprocess.run([str(installed.python), str(ROOT / "packaging" / "app_smoke.py"), str(shot),
                          "--model", model, "--weights", weights, a, b],
                         capture_output=True, text=True, env=clean_env(tmp_path), cwd=tmp_path, timeout=500)
    report = json.loads(shot.with_suffix(".json").read_text()) if shot.with_suffix(".json").exists() else {}
    assert out.returncode == 0 and report.get("ok"), (report, out.stderr[-3000:])
    assert Path(report["vitviz_file"]).is_relative_to(installed.site)
    assert report["vitviz_version"] == VERSION
    assert report["images"] == [a, b]
    assert [(s["image"], s["model"], s["trained"]) for s in report["shown"]] == [
        (a, model, trained), (b, model, trained)]
    assert report["desktop_file_name"] == desktop_entry()["StartupWMClass"]
    assert not report["window_icon_null"]
    from PIL import Image

    with Image.open(shot) as im:
        assert im.width >= 800 and im.height >= 500
        assert len(im.convert("RGB").getcolors(1 << 16) or range(1 << 16)) > 50  # not a blank window


# -- PyInstaller ------------------------------------------------------------------------------------
def _exec_spec(platform: str) -> dict:
    """Run the spec with PyInstaller's build objects recorded instead of built (no PyInstaller needed)."""
    calls: dict = {}

    def recorder(kind):
        def make(*args, **kwargs):
            calls[kind] = types.SimpleNamespace(args=args, kwargs=kwargs, pure=[], scripts=[], binaries=[],
                                                datas=[])
            return calls[kind]
        return make

    hooks = types.ModuleType("PyInstaller.utils.hooks")
    hooks.collect_dynamic_libs = lambda pkg, **kw: [(f"/site/{pkg}/_C_stable.so", pkg)]
    hooks.copy_metadata = lambda dist: [(f"/site/{dist}-{VERSION}.dist-info", f"{dist}-{VERSION}.dist-info")]
    fake = {"PyInstaller": types.ModuleType("PyInstaller"),
            "PyInstaller.utils": types.ModuleType("PyInstaller.utils"), "PyInstaller.utils.hooks": hooks}
    saved = {k: sys.modules.get(k) for k in fake}
    sys.modules.update(fake)
    real_platform = sys.platform
    try:
        sys.platform = platform
        ns = {"SPECPATH": str(SPEC.parent), "__file__": str(SPEC)}
        ns.update({k: recorder(k) for k in ("Analysis", "PYZ", "EXE", "COLLECT", "BUNDLE")})
        exec(compile(SPEC.read_text(), str(SPEC), "exec"), ns)
    finally:
        sys.platform = real_platform
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return calls


@pytest.mark.parametrize("platform", ["linux", "win32", "darwin"])
def test_pyinstaller_spec(platform):
    calls = _exec_spec(platform)
    analysis, exe = calls["Analysis"], calls["EXE"].kwargs
    script = Path(analysis.args[0][0])
    assert script.is_file()
    assert "from vitviz.__main__ import main" in script.read_text()
    excludes = set(analysis.kwargs["excludes"])
    assert {"tkinter", "tests", "pytest"} <= excludes and "torch" not in excludes
    hidden = set(analysis.kwargs["hiddenimports"])
    assert "app_smoke" in hidden
    # modules imported by name (panels, runners, subcommands), namespace packages included
    assert {"vitviz.__main__", "vitviz.gui.views.vit_panel", "vitviz.core.capture.vit"} <= hidden
    assert ("/site/torchvision/_C_stable.so", "torchvision") in analysis.kwargs["binaries"]  # its ops
    assert exe["console"] is False and exe["exclude_binaries"] is True  # windowed, one-folder
    assert exe["name"] == "vitviz" and calls["COLLECT"].kwargs["name"] == "vitviz"
    bundled = {f"{dest}/{Path(src).name}" for src, dest in analysis.kwargs["datas"]
               if dest.startswith("vitviz/resources")}
    assert bundled == {f"vitviz/resources/{p}" for p in runtime_resources()}
    assert any(dest.startswith("vitviz-") and dest.endswith(".dist-info") for _, dest in analysis.kwargs["datas"])
    icon = exe["icon"]
    if platform == "linux":
        assert icon is None and "BUNDLE" not in calls
    else:
        assert Path(icon).is_file() and icon.endswith(".ico" if platform == "win32" else ".icns")
    if platform == "darwin":
        assert calls["BUNDLE"].kwargs["bundle_identifier"] == METAINFO.name.removesuffix(".metainfo.xml")


@pytest.mark.slow
def test_pyinstaller_bundle_runs(tmp_path):
    """The full one-folder build (several minutes, GBs on disk), then the bundle checks itself."""
    pytest.importorskip("PyInstaller")
    dist, work = tmp_path / "dist", tmp_path / "work"
    subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
                    "--distpath", str(dist), "--workpath", str(work), str(SPEC)],
                   check=True, cwd=ROOT, timeout=3600)
    exe = dist / "vitviz" / ("vitviz.exe" if os.name == "nt" else "vitviz")
    env = clean_env(tmp_path)
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.strip() == f"vitviz {VERSION}"
    shot = tmp_path / "bundle.png"
    a, b = (str(p) for p in res.sample_images()[:2])
    env["VITVIZ_SMOKE"] = str(shot)
    model, weights, _ = smoke_model()
    subprocess.run([str(exe), "--model", model, "--weights", weights, a, b], env=env, timeout=600)
    report = json.loads(shot.with_suffix(".json").read_text())
    assert report["ok"], report
    assert report["resource_dir"].startswith(str(dist / "vitviz"))
    assert [s["image"] for s in report["shown"]] == [a, b]


def test_every_package_is_listed_in_pyproject():
    """pyproject lists packages by hand (resources/ is mapped into the package): none may be missed."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {str(p.parent.relative_to(ROOT)).replace("/", ".") for p in (ROOT / "vitviz").rglob("*.py")}
    assert on_disk | {"vitviz.resources"} == listed
