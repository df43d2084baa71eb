"""Entry script of the PyInstaller bundle: the same main() as the `vitviz` gui-script.

With VITVIZ_SMOKE=OUT.png in the environment the bundle checks itself instead of waiting for a person:
it opens the images given, saves a screenshot of the window to OUT.png, writes OUT.json and quits
(packaging/app_smoke.py, bundled beside vitviz for this)."""
import multiprocessing
import os
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    out = os.environ.get("VITVIZ_SMOKE")
    if out:
        from app_smoke import run

        sys.exit(run(out, sys.argv[1:]))
    from vitviz.__main__ import main

    sys.exit(main())
