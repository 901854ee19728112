"""The reply timeout of a simulated slave that answers, in tests that say it never times out.

A simulator answers in milliseconds, but from the test's own event loop (or a process of its
own), and a loaded 2-core CI machine (load 13) may not run that loop for a few hundred ms. A
reply the simulator had not yet sent when its master judged the deadline is a timeout, and
the healthy slave's points are BAD for a reason that says nothing about the code under test:
a 150 ms timeout failed so (`test_agent_status`). A healthy slave's timeout costs nothing
while it answers, so it is far above any stall; only a silent slave's, which the test waits
out, is short.
"""

from __future__ import annotations

from typing import Final

ANSWERING: Final = 5.0
"""Seconds: the timeout of a simulated slave that answers."""

ANSWERING_MAP: Final = f"{ANSWERING:g}s"
"""The same as a site map writes it."""
