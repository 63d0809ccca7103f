"""ibapi 10.x's message loop after a disconnect: the TypeError it ends with then is not ours; before, it is."""

from __future__ import annotations

import pytest

from ibstream.ib.session import _run


class _Loop:
    def __init__(self, connected: bool) -> None:
        self.connected = connected

    def isConnected(self) -> bool:  # noqa: N802  (ibapi's name)
        return self.connected

    def run(self) -> None:
        # what 10.x's EClient.run does with a message still queued once disconnect() reset the server version
        None >= 201  # type: ignore[operator]  # noqa: B015


def test_the_loops_typeerror_after_a_disconnect_ends_it_quietly() -> None:
    _run(_Loop(connected=False))  # type: ignore[arg-type]


def test_a_typeerror_while_connected_is_a_real_error() -> None:
    with pytest.raises(TypeError):
        _run(_Loop(connected=True))  # type: ignore[arg-type]
