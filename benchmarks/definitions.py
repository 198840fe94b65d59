"""Section 5, definitions load: ``import mlops_assets.definitions`` in a fresh interpreter against
an empty Dagster project."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import HEAVY_MODULES, PACKAGE_ROOT, BenchError, Plan, _r

# 5. Definitions load ------------------------------------------------------------------------

_IMPORT_DEFS = "import mlops_assets.definitions"
_EMPTY_PROJECT = "import dagster; dagster.Definitions()"
_MODULES_CHECK = (
    "import json, sys\nimport mlops_assets.definitions\n"
    "print(json.dumps(sorted(m for m in {mods!r} if m in sys.modules)))"
)


def bench_definitions(plan: Plan, env: dict[str, str], work: Path) -> dict[str, Any]:
    """Median wall time of fresh interpreters importing the definitions, an empty Dagster
    project and nothing, alternated so that load on the machine hits each alike."""
    import compileall

    # Dagster's modules were compiled to bytecode when pip installed them; ours are compiled
    # here, as the first import would (unless PYTHONDONTWRITEBYTECODE is set, then every load
    # would recompile them and pay about 0.1 s the empty project does not).
    compileall.compile_dir(PACKAGE_ROOT / "mlops_assets", quiet=1)
    commands = {"definitions": _IMPORT_DEFS, "empty_dagster": _EMPTY_PROJECT, "python": "pass"}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(plan.load_repeats):
        for name, code in commands.items():
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", code],
                env=env,
                cwd=work,
                capture_output=True,
                text=True,
                timeout=300,
            )
            times[name].append(time.perf_counter() - started)
            if done.returncode != 0:
                raise BenchError(f"python -c {code!r} failed:\n{done.stderr[-2000:]}")
    check = subprocess.run(
        [sys.executable, "-c", _MODULES_CHECK.format(mods=HEAVY_MODULES)],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check.returncode != 0:
        raise BenchError(f"the import check failed:\n{check.stderr[-2000:]}")
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "repeats": plan.load_repeats,
        "definitions_seconds": _r(medians["definitions"]),
        "empty_dagster_seconds": _r(medians["empty_dagster"]),
        "python_seconds": _r(medians["python"]),
        "all_seconds": {name: [_r(v) for v in values] for name, values in times.items()},
        "ratio": _r(medians["definitions"] / medians["empty_dagster"], 2),
        "heavy_modules_checked": list(HEAVY_MODULES),
        "heavy_modules_imported": json.loads(check.stdout.strip().splitlines()[-1]),
    }
