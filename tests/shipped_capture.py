"""The capture shipped with the package (``mptcp-fast analyze`` with no file reads it), as the
tests read it."""

from mptcp_fast.analysis import capture
from mptcp_fast.cli.analyze import SHIPPED_CAPTURE

__all__ = ["SHIPPED_CAPTURE", "first_batch"]


def first_batch() -> dict:
    """The reader's first batch of columns of the shipped capture: fresh arrays on each call,
    so a test may damage them."""
    with capture.open_capture(SHIPPED_CAPTURE) as reader:
        return next(iter(reader.columns()))
