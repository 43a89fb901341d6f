"""predictions.csv: one row per test image, streamed to disk while evaluating (no list
of every row is held). Under DDP each process writes its own part file; process 0 merges
them in data-set order and renames the result over predictions.csv."""

from __future__ import annotations

import csv
import heapq
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from wsol.io import atomic_open


class PredictionWriter:
    def __init__(self, path: str | Path, rank: int = 0):
        self.path = Path(path)
        self.rank = rank
        self.part = self.path.with_name(f".{self.path.name}.rank{rank}.part")
        self._file = None
        self._writer = None
        self._fields: list[str] | None = None

    def write(self, rows: Iterable[Mapping[str, object]]) -> None:
        for row in rows:
            if self._writer is None:
                self.part.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.part, "w", encoding="utf-8", newline="")
                self._fields = list(row.keys())
                self._writer = csv.DictWriter(
                    self._file, fieldnames=self._fields, extrasaction="ignore"
                )
                self._writer.writeheader()
            self._writer.writerow(row)

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            self._writer = None

    @staticmethod
    def merge(path: str | Path, world_size: int, key: str = "index") -> None:
        """Merge the part files of ``world_size`` processes by ``key`` into ``path``."""
        path = Path(path)
        parts = [path.with_name(f".{path.name}.rank{r}.part") for r in range(world_size)]
        parts = [p for p in parts if p.exists()]
        if not parts:
            return
        files = [open(p, encoding="utf-8", newline="") for p in parts]
        try:
            readers = [csv.DictReader(f) for f in files]
            fields = readers[0].fieldnames or []
            with atomic_open(path, "w", encoding="utf-8", newline="") as out:
                w = csv.DictWriter(out, fieldnames=fields)
                w.writeheader()
                for row in heapq.merge(*readers, key=lambda r: int(r[key])):
                    w.writerow(row)
        finally:
            for f in files:
                f.close()
        for p in parts:
            p.unlink()
