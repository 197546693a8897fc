# The cyclic collector's tracking, for the engine's small per-subflow and per-segment objects
# compiled from pure-mode sources: Cython's @cython.no_gc is refused on a class of a pure-mode
# .py (and ignored in its augmenting .pxd), so such an object that holds only numbers, bytes
# and other such objects, and so is never part of a reference cycle, is untracked once made.
# Its type still deallocates it as a tracked type does (PyObject_GC_UnTrack on an untracked
# object is allowed, CPython's deallocators rely on it).

cdef extern from "Python.h":
    void PyObject_GC_UnTrack(object op)


cdef inline void untrack(object obj) noexcept:
    PyObject_GC_UnTrack(obj)
