"""bench/procfs.py: a process's CPU and memory and the machine's ticks, read from /proc."""

from __future__ import annotations

import os

import pytest

from bench.procfs import cpu_seconds, growth, machine_ticks, memory_kib


def test_cpu_seconds_agree_with_what_the_process_itself_counts() -> None:
    sum(i * i for i in range(300_000))  # some CPU of our own to count
    own = os.times()
    assert cpu_seconds(os.getpid()) == pytest.approx(own.user + own.system, abs=0.05)


def test_a_process_that_is_not_there_has_no_cpu_to_read() -> None:
    with pytest.raises(FileNotFoundError):
        cpu_seconds(2**22 + 1)  # above the kernel's largest pid (pid_max): never a process


def test_memory_is_resident_now_and_at_its_peak() -> None:
    rss, peak = memory_kib(os.getpid())
    assert 0 < rss <= peak


def test_machine_ticks_count_busy_within_total() -> None:
    busy, total = machine_ticks()
    assert 0 < busy < total


@pytest.mark.parametrize(
    ("before", "after", "grown"),
    [
        ({1: 10, 2: 5}, {1: 15, 2: 5}, 5),
        ({1: 10}, {1: 10, 3: 7}, 7),  # a new key counts from 0
        ({1: 10, 2: 5}, {1: 12}, 2),  # a key gone by `after` adds nothing
        ({}, {}, 0),
        ({9: 1.5}, {9: 2.25, 4: 0.5}, 1.25),
    ],
)
def test_growth_between_two_snapshots_of_keyed_counters(
    before: dict[int, float], after: dict[int, float], grown: float
) -> None:
    assert growth(before, after) == pytest.approx(grown)
