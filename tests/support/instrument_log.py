"""An instrument log as `edge-agent backfill --csv` reads it: a CSV of point, time, value,
quality, written at the size a test asks for."""

from __future__ import annotations

from pathlib import Path

LOG_POINTS = ("T001-LT-01", "T002-TT-01", "T003-PT-01", "T001-LEL-01")


def write_log(path: Path, day: int, rows: int) -> Path:
    """An instrument log of `rows` rows: every point once per second of March `day` 2024."""
    with path.open("w", encoding="utf-8") as out:
        out.write("point,t,value,quality\n")
        for i in range(rows):
            second = i // len(LOG_POINTS)
            t = f"2024-03-{day:02d} {second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
            out.write(f"{LOG_POINTS[i % len(LOG_POINTS)]},{t},{1 + i % 7 * 0.5},good\n")
    return path
