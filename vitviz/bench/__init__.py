"""`vitviz bench`: the performance figures of the README, measured side by side in one run.

metrics.py holds the row type and the timing helpers; one module per group of rows (capture,
gui, startup, rollout, memory, soak, batch; the opt-in ray in ray_engine.py); vitviz.cli.bench runs
them and prints the table / JSON.
Torch and Qt are imported inside the functions that need them.
"""
