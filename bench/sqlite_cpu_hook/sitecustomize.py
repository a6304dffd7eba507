"""Loaded by every Python process whose PYTHONPATH has this folder (bench/sqlite_cpu.py puts the
services' there): times each call aiosqlite runs on its SQLite thread, in that thread's CPU time,
by statement, and writes the totals to $LINDUNG_BENCH_SQLITE_CPU_DIR/<pid>.json every 2 s and at
exit. Nothing happens without that variable."""

from __future__ import annotations

import os

if os.environ.get("LINDUNG_BENCH_SQLITE_CPU_DIR"):
    import atexit
    import json
    import re
    import sys
    import threading
    import time
    from typing import Any

    import aiosqlite.core

    _out = os.environ["LINDUNG_BENCH_SQLITE_CPU_DIR"]
    _totals: dict[str, list[float]] = {}  # statement -> [calls, rows, thread CPU seconds]
    _lock = threading.Lock()
    _execute = aiosqlite.core.Connection._execute

    def _statement(fn: Any, args: tuple[Any, ...]) -> str:
        name = getattr(fn, "__name__", "call")
        if args and isinstance(args[0], str):
            sql = re.sub(r"\(\?(, \?)*\)", "(?...)", " ".join(args[0].split()))
            return f"{name}: {sql[:80]}"
        return name

    async def _timed_execute(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        statement = _statement(fn, args)
        rows = len(args[1]) if getattr(fn, "__name__", "") == "executemany" else 1

        def run() -> Any:  # on aiosqlite's thread
            began = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.thread_time() - began
                with _lock:
                    total = _totals.setdefault(statement, [0, 0, 0.0])
                    total[0] += 1
                    total[1] += rows
                    total[2] += spent

        return await _execute(self, run)

    def _write() -> None:
        with _lock:
            data = {"argv": sys.argv, "statements": dict(_totals)}
        with open(os.path.join(_out, f"{os.getpid()}.json"), "w") as file:
            json.dump(data, file)

    def _write_every_2_s() -> None:
        while True:
            time.sleep(2)
            _write()

    aiosqlite.core.Connection._execute = _timed_execute  # type: ignore[method-assign]
    threading.Thread(target=_write_every_2_s, daemon=True).start()
    atexit.register(_write)
