"""Testbeds against the Linux kernel, shipped for users who verify their own setups.

``testbed`` (a kernel MPTCP peer in a network namespace), ``kernel_capture`` (real kernel MPTCP
traffic recorded to a capture) and ``conformance`` (the engine against the kernel, group by
group after the kernel's selftests: ``python -m mptcp_fast.testing.conformance``). They need
root and a kernel with MPTCP.
"""
