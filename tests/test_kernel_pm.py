"""The userspace path manager's netlink client (mptcp_fast.net.kernel_pm): the attributes it writes,
byte for byte, and the kernel's refusal as one KernelPmError. The kernel's acceptance of each
command is tested in the conformance suite (userspace_pm)."""

from __future__ import annotations

import errno
import struct

import pytest

from mptcp_fast.net import kernel_pm
from mptcp_fast.net.netns import Namespace
from mptcp_fast.testing.testbed import run_name


def test_an_address_is_a_nested_set_of_padded_attributes():
    encoded = kernel_pm._address("198.18.2.1", address_id=5, port=5000, flags=1)
    assert encoded == (struct.pack("=HHH", 6, 1, 2) + b"\0\0"          # family AF_INET, padded
                       + struct.pack("=HH", 8, 3) + bytes([198, 18, 2, 1])
                       + struct.pack("=HHB", 5, 2, 5) + b"\0" * 3        # id 5
                       + struct.pack("=HHH", 6, 5, 5000) + b"\0\0"       # port, host order
                       + struct.pack("=HHI", 8, 6, 1))                   # flags: signal
    assert kernel_pm._attrs(encoded) == {1: struct.pack("=H", 2), 3: bytes([198, 18, 2, 1]),
                                         2: b"\x05", 5: struct.pack("=H", 5000),
                                         6: struct.pack("=I", 1)}
    v6 = kernel_pm._attrs(kernel_pm._address("2001:2::1"))
    assert v6[1] == struct.pack("=H", 10) and len(v6[4]) == 16 and 2 not in v6


@pytest.mark.requires("testbed")
def test_the_kernels_refusal_is_one_error_with_its_reason():
    with Namespace.create(run_name("mfpm")) as ns:
        ns.sysctl("net.mptcp.pm_type", 1)
        with ns.entered():
            pm = kernel_pm.UserspacePM()
        with pm:
            with pytest.raises(kernel_pm.KernelPmError) as refused:
                pm.announce(0x1234, "198.18.2.1", 5)
    assert refused.value.errno == errno.EINVAL
    assert str(refused.value) == "the kernel refused: Invalid argument (invalid token)"
