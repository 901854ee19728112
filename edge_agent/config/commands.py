"""`commands:` in the site map: how the agent takes signed commands (DESIGN section 11)."""

# No `from __future__ import annotations`: pydantic reads these annotations at runtime.

from typing import Annotated

from configkit.fields import ConfigModel, Duration, duration_bounds


class CommandsConfig(ConfigModel):
    """Remote device maps: how long a pushed map may read nothing good before it is undone.

    The window of the map that was running when the command came is the one that counts: a
    pushed map cannot lengthen its own probation.
    """

    rollback_after: Annotated[Duration, duration_bounds(at_least=1.0, at_most=3600.0)] = 60.0
    """How long a pushed map may read nothing good before the previous map is put back."""
