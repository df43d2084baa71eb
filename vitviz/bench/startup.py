"""Row group 4: start-up, in fresh subprocesses, timed from just before the process is spawned.

- `vitviz IMAGE` with VITVIZ_BENCH_STARTUP=map: when the main window's first paint has finished
  (and whether torch was in sys.modules by then: the window must come up before torch loads), and
  when the first attention map has been painted (random ViT-B/16 weights: no checkpoint is read).
  (VITVIZ_BENCH_STARTUP=paint stops at the first paint.)
- a baseline process (`python -m vitviz.bench.startup baseline ...`): the time `import torch` takes
  in a fresh interpreter, and one plain forward of the same model on the same image. The goal for
  the first map is relative to it, so both are measured in the same run, alternating.

vitviz.gui.app calls gui.startup_probe.install_probe() when VITVIZ_BENCH_STARTUP is set. Both import only the
standard library at the top, so the probe changes nothing about what the app imports, or when.
"""
from __future__ import annotations

import json
import sys
import time

from ..gui.startup_probe import ENV, PREFIX  # noqa: F401 (the app prints these lines; stdlib only)

MODEL = "vit_b_16"
GOAL_PAINT = "<= 0.8"
GOAL_MAP_RATIO = "<= 1.2"

M_PAINT = "Start-up to first window paint"
M_TORCH = "Start-up: runs with torch imported at first paint"
M_MAP = "Start-up to first attention map, ViT-B/16"
M_RATIO = "First attention map / (torch import + one plain forward)"


def metrics() -> list[tuple[str, str, str | None]]:
    """(metric, unit, goal) of every row, in order."""
    return [(M_PAINT, "s", GOAL_PAINT), (M_TORCH, "runs", "<= 0"), (M_MAP, "s", None),
            (M_RATIO, "x", GOAL_MAP_RATIO)]


# -- the baseline child process ----------------------------------------------------------------
def baseline_main(argv: list[str]) -> int:
    """`python -m vitviz.bench.startup baseline MODEL IMAGE DEVICE`: JSON of seconds for
    import torch, import torchvision, model build + input, one plain forward."""
    model, image, device = argv
    t0 = time.perf_counter()
    import torch

    t1 = time.perf_counter()
    import torchvision  # noqa: F401

    t2 = time.perf_counter()
    from vitviz.core.api import get_model
    from vitviz.core.image import load_image
    from vitviz.core.preprocess import prepare

    loaded = get_model(model, "random", device)
    x, _ = prepare(load_image(image), loaded.preprocess)
    x = x.unsqueeze(0).to(loaded.device)
    cuda = loaded.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    t3 = time.perf_counter()
    with torch.no_grad():
        loaded.module(x)
    if cuda:
        torch.cuda.synchronize()
    t4 = time.perf_counter()
    print(json.dumps({"torch_import": t1 - t0, "torchvision_import": t2 - t1, "build": t3 - t2,
                      "forward": t4 - t3}))
    return 0


def gui_imports_main() -> int:
    """`python -m vitviz.bench.startup gui_imports`: JSON of seconds for the GUI's big imports."""
    t0 = time.perf_counter()
    from PySide6 import QtWidgets  # noqa: F401

    t1 = time.perf_counter()
    import pyqtgraph  # noqa: F401

    t2 = time.perf_counter()
    import vitviz.gui.main_window  # noqa: F401

    t3 = time.perf_counter()
    print(json.dumps({"pyside6": t1 - t0, "pyqtgraph": t2 - t1, "main_window": t3 - t2,
                      "torch_loaded": "torch" in sys.modules}))
    return 0


# -- the parent --------------------------------------------------------------------------------
def _app_run(ctx, mode: str, timeout: float) -> dict:
    import subprocess

    env = ctx.child_env()
    env[ENV] = mode
    cmd = [sys.executable, "-m", "vitviz", str(ctx.image_path), "--model", MODEL, "--weights", "random",
           "--device", ctx.device]
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    events = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == PREFIX:
            events[parts[1]] = {"t": float(parts[2]) - t0,
                                **dict(p.split("=", 1) for p in parts[3:] if "=" in p)}
    if "error" in events:
        raise RuntimeError(f"the app reported an error: {events['error'].get('message')}")
    want = "first_map" if mode == "map" else "first_paint"
    if want not in events:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"the app exited ({proc.returncode}) without reporting {want}: {' | '.join(tail)}")
    return events


def _baseline_run(ctx, timeout: float, what: str = "baseline") -> dict:
    import subprocess

    cmd = [sys.executable, "-m", "vitviz.bench.startup", what]
    if what == "baseline":
        cmd += [MODEL, str(ctx.image_path), ctx.device]
    proc = subprocess.run(cmd, env=ctx.child_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError("baseline process failed: " + " | ".join(proc.stderr.strip().splitlines()[-3:]))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(ctx) -> list:
    """Rounds of (app process, baseline process), the order swapped every round. The app process
    runs to the first attention map; its first paint (reported on the way, before the image is
    even opened) is the first-paint figure: up to that point it is the same run as mode "paint"."""
    from .metrics import Row, median, missing

    n = ctx.repeats(5, 1)
    paints, torch_at_paint, maps, base, builts, gui = [], [], [], [], [], []
    errors = {}
    steps = [("map", lambda: _app_run(ctx, "map", 900)), ("base", lambda: _baseline_run(ctx, 900)),
             ("gui", lambda: _baseline_run(ctx, 300, "gui_imports"))]
    for i in range(n):
        for kind, fn in (steps if i % 2 == 0 else steps[::-1]):
            try:
                out = fn()
            except Exception as exc:
                errors[kind] = f"failed: {type(exc).__name__}: {exc}"
                continue
            if kind == "map":
                paints.append(out["first_paint"]["t"])
                torch_at_paint.append(out["first_paint"].get("torch") == "1")
                maps.append(out["first_map"]["t"])
                if "window_built" in out:
                    builts.append(out["window_built"]["t"])
            elif kind == "base":
                base.append(out)
            else:
                gui.append(out)
    rows = []
    how = (f"median of {n} fresh processes (`python -m vitviz IMAGE --model {MODEL} --weights random`), "
           f"timed from just before the spawn; Qt platform {ctx.child_env().get('QT_QPA_PLATFORM') or 'default'}")
    if paints:
        rows.append(Row(M_PAINT, median(paints), "s", GOAL_PAINT, note=(
            f"{how}; first paint of the main window finished; of that, {median(builts):.2f} s until the "
            f"imports were done and MainWindow built" if builts else how) + (
            f"; in a separate fresh process, import PySide6.QtWidgets {median([g['pyside6'] for g in gui]):.2f} s, "
            f"pyqtgraph {median([g['pyqtgraph'] for g in gui]):.2f} s, vitviz.gui.main_window "
            f"{median([g['main_window'] for g in gui]):.2f} s (torch imported by them: "
            f"{any(g['torch_loaded'] for g in gui)})" if gui else "")))
        rows.append(Row(M_TORCH, sum(torch_at_paint), "runs", "<= 0", note=(
            f"of {len(paints)} runs, those where 'torch' was in sys.modules when the first paint had finished")))
    else:
        rows += [missing(M_PAINT, "s", GOAL_PAINT, errors.get("map", "no run")),
                 missing(M_TORCH, "runs", "<= 0", errors.get("map", "no run"))]
    if maps:
        rows.append(Row(M_MAP, median(maps), "s", None, note=(
            f"{how}; until the first attention map (random weights, {ctx.device}) has been painted")))
    else:
        rows.append(missing(M_MAP, "s", None, errors.get("map", "no run")))
    if maps and base:
        b = {k: median([d[k] for d in base]) for k in base[0]}
        ref = b["torch_import"] + b["forward"]
        rows.append(Row(M_RATIO, median(maps) / ref, "x", GOAL_MAP_RATIO, note=(
            f"baseline processes (median of {len(base)}): import torch {b['torch_import']:.2f} s + one plain "
            f"forward {b['forward']:.2f} s = {ref:.2f} s; not in the reference but needed by the app: import "
            f"torchvision {b['torchvision_import']:.2f} s, building the random model + input {b['build']:.2f} s")))
    else:
        rows.append(missing(M_RATIO, "x", GOAL_MAP_RATIO, errors.get("base") or errors.get("map", "no run")))
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "baseline":
        sys.exit(baseline_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "gui_imports":
        sys.exit(gui_imports_main())
    sys.exit("usage: python -m vitviz.bench.startup baseline MODEL IMAGE DEVICE | gui_imports")
