"""Start-up helpers: the solver's engine is imported without the process pool it never uses."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_solver_imports_no_multiprocessing_and_leaves_concurrent_futures_real() -> None:
    """After importing the search: no multiprocessing; then concurrent.futures and the engine's pools are real."""
    code = (
        "import sys, pcitopo.solver.search, constraint.solvers as s\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('multiprocessing', 'concurrent', 'socket')))\n"
        "import concurrent.futures as f\n"
        "print(f.ProcessPoolExecutor.__module__, f.ThreadPoolExecutor.__module__)\n"
        "with s.ThreadPoolExecutor(max_workers=1) as pool:\n"
        "    print(type(pool) is f.ThreadPoolExecutor, pool.submit(sum, [1, 2]).result())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == [
        "['concurrent']",
        "concurrent.futures.process concurrent.futures.thread",
        "True 3",
    ]


def test_the_engine_is_imported_as_usual_when_concurrent_futures_already_is() -> None:
    """With concurrent.futures imported first, the engine's names are the real executors."""
    code = (
        "import concurrent.futures as f, pcitopo.solver.search, constraint.solvers as s\n"
        "print(s.ProcessPoolExecutor is f.ProcessPoolExecutor, s.ThreadPoolExecutor is f.ThreadPoolExecutor)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "True"]
