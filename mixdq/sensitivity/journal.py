"""A sweep's journal: finished probes appended as they come, so a run killed at any moment (even
`kill -9`) resumes where it stopped; and the lock that keeps a second driver off it."""

from __future__ import annotations

import fcntl
import json
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mixdq.core.errors import ConfigError


class Journal:
    """Append-only record of finished probes. The first line names the sweep; a torn last line
    (the process died mid-write) is ignored on reading."""

    def __init__(self, path: Path, header: dict):
        self.path = path
        self.header = header

    def read(self) -> dict[tuple[str, str, int], dict]:
        if not self.path.exists():
            return {}
        lines = self.path.read_text(encoding="utf-8").splitlines()
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # torn write: everything after it is lost, and re-measured
        if not records:  # empty, or killed while writing its very first line
            return {}
        if records[0].get("header") != self.header:
            raise ConfigError(
                f"{self.path} holds a different sweep (other model, prompts, bits or settings); "
                "delete it to start afresh, or pass --restart, or write to another -o PROFILE"
            )
        return {(r["kind"], r["layer"], r["bits"]): r for r in records[1:]}

    def start(self, done: dict) -> None:
        """(Re)write the journal with the valid records only, then keep it open for appends."""
        lines = [json.dumps({"header": self.header})] + [json.dumps(r) for r in done.values()]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)
        self._file = open(self.path, "a", encoding="utf-8")

    def append(self, record: dict) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if hasattr(self, "_file"):
            self._file.close()


def journal_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".partial.jsonl")


@contextmanager
def journal_lock(out: str | Path) -> Iterator[None]:
    """Hold `<out>.lock` for the sweep's lifetime: a second driver on the same journal is refused
    instead of interleaving its records. The OS drops the lock when the holder dies (even by
    SIGKILL), so a resumed run never finds a stale one."""
    path = Path(out).with_name(Path(out).name + ".lock")
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise ConfigError(f"another sweep ({holder}) is writing {journal_path(out)}; wait for it to finish or "
                              "stop it, or write to another -o PROFILE") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {platform.node()}")
        f.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
            fcntl.flock(f, fcntl.LOCK_UN)
