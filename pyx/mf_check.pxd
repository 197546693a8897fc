# Argument conversion at the public API of the compiled modules. The fast path takes a
# Python int that fits; everything else goes through mptcp_fast._check, the pure twin's
# checks, so both backends raise the same class with the same message (TypeError for a
# wrong type, floats and bools included; ValueError for a value out of range). A module that
# cimports these must itself `from mptcp_fast import _check` too: the import below names
# the module for Cython, but a .pxd's imports do not run in the module that cimports it.
from libc.stdint cimport uint64_t, int64_t

from mptcp_fast import _check


cdef inline uint64_t u64_arg(object value, str name) except? 0xFFFFFFFFFFFFFFFF:
    if type(value) is int:
        try:
            return <uint64_t>value
        except OverflowError:
            pass
    return <uint64_t>_check.uint(name, value, 64)


cdef inline int64_t int_arg(object value, str name, int64_t low, int64_t high) except? -1:
    cdef int64_t v
    if type(value) is int:
        try:
            v = <int64_t>value
            if low <= v <= high:
                return v
        except OverflowError:
            pass
    return <int64_t>_check.in_range(name, value, low, high)
