"""IB: the only module that imports ibapi. Connection with reconnect, one pacing governor, IB's error codes."""
