# Emptying a list in place from compiled code, as one C call: list.clear() and del l[:]
# compiled each take Python's generic path (a method looked up by name, or a slice object),
# some hundreds of instructions, on lists the engine and the emulator empty per packet (the
# endpoint's outbox, its connections with events, a path's queue run dry). The lists are
# emptied in place because others hold them (a subflow appends to the endpoint's outbox).

from cpython.object cimport PyObject

cdef extern from "Python.h":
    int PyList_SetSlice(object lst, Py_ssize_t low, Py_ssize_t high, PyObject* items) except -1
    Py_ssize_t PY_SSIZE_T_MAX


cdef inline int clear(list items) except -1:
    return PyList_SetSlice(items, 0, PY_SSIZE_T_MAX, NULL)
