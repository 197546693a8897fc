# The mappings received on one subflow direction, as plain C (RFC 8684 §3.3.1), shared by
# _dss.pyx (SubflowMappings) and _tracking.pyx (the capture analyzer's fast path).
# Entries are sorted by start; subflow sequence numbers are relative and already expanded
# to 64 bits by the caller. One rule for both users: overlapping mappings must put the same
# bytes at the same DSNs (with or without a DATA_FIN riding on them), and once an
# infinite mapping (Data-Level Length 0, RFC 8684 §3.7) is in force it decides everything after.
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memmove

cdef enum:
    MS_MAX_PAYLOAD = 0xFFFF      # Data-Level Length is 16 bits: no mapping covers more bytes
    MS_NEW = 1                   # ms_declare results
    MS_KNOWN = 0
    MS_CONFLICT = -1
    MS_NO_MEMORY = -2


cdef struct MapEntry:
    int64_t start                # first subflow byte
    int64_t end                  # one past the last subflow byte (the DATA_FIN has none)
    uint64_t dsn
    int64_t length               # the Data-Level Length; 0 is the infinite mapping
    int64_t checksum             # -1 when the option had none
    bint data_fin


cdef struct MapStore:
    MapEntry* maps
    Py_ssize_t count
    Py_ssize_t capacity
    bint has_infinite
    MapEntry infinite


cdef inline void ms_entry(MapEntry* e, int64_t start, uint64_t dsn, int64_t length,
                          bint data_fin, int64_t checksum) noexcept nogil:
    e.start = start
    e.dsn = dsn
    e.length = length
    e.data_fin = data_fin
    e.checksum = checksum
    e.end = start + (length - 1 if data_fin else length)


cdef inline int ms_init(MapStore* s) noexcept nogil:
    """0, or -1 when out of memory."""
    s.capacity = 8
    s.count = 0
    s.has_infinite = False
    s.maps = <MapEntry*>malloc(s.capacity * sizeof(MapEntry))
    return -1 if s.maps == NULL else 0


cdef inline void ms_free(MapStore* s) noexcept nogil:
    free(s.maps)
    s.maps = NULL
    s.count = s.capacity = 0


cdef inline uint64_t ms_dsn_at(const MapEntry* e, int64_t subflow_seq) noexcept nogil:
    return e.dsn + <uint64_t>(subflow_seq - e.start)


cdef inline Py_ssize_t ms_lower_bound(const MapStore* s, int64_t value) noexcept nogil:
    """First index whose start is >= value."""
    cdef Py_ssize_t lo = 0, hi = s.count, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if s.maps[mid].start < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline bint ms_consistent(const MapEntry* old, const MapEntry* new) noexcept nogil:
    """Same DSNs for the bytes both cover. A repeat that adds or drops a DATA_FIN is
    consistent: Linux compares mappings without the DATA_FIN's +1 (KERNEL.md §2)."""
    cdef int64_t lo = old.start if old.start > new.start else new.start
    return ms_dsn_at(old, lo) == ms_dsn_at(new, lo)


cdef inline int ms_declare(MapStore* s, const MapEntry* e, MapEntry* conflict) noexcept nogil:
    """MS_NEW, MS_KNOWN (a repeat, or any mapping once the infinite one is in force), MS_CONFLICT (the contradicted entry
    is copied to *conflict) or MS_NO_MEMORY."""
    cdef Py_ssize_t i
    cdef bint new = True
    cdef MapEntry* grown
    if s.has_infinite:
        if e.start >= s.infinite.start and ms_dsn_at(e, e.start) != ms_dsn_at(&s.infinite, e.start):
            conflict[0] = s.infinite
            return MS_CONFLICT
        return MS_KNOWN
    if e.length == 0:                                  # the infinite mapping
        i = ms_lower_bound(s, e.start - MS_MAX_PAYLOAD)
        while i < s.count:
            if s.maps[i].end > e.start and not ms_consistent(&s.maps[i], e):
                conflict[0] = s.maps[i]
                return MS_CONFLICT
            i += 1
        s.infinite = e[0]
        s.has_infinite = True
        return MS_NEW
    if e.end == e.start:
        return MS_NEW                                  # a standalone DATA_FIN: nothing to store
    i = ms_lower_bound(s, e.start - MS_MAX_PAYLOAD)
    while i < s.count and s.maps[i].start < e.end:
        if s.maps[i].end > e.start:
            if not ms_consistent(&s.maps[i], e):
                conflict[0] = s.maps[i]
                return MS_CONFLICT
            if (s.maps[i].start == e.start and s.maps[i].dsn == e.dsn
                    and s.maps[i].length == e.length and s.maps[i].data_fin == e.data_fin
                    and s.maps[i].checksum == e.checksum):
                new = False
        i += 1
    if not new:
        return MS_KNOWN
    if s.count == s.capacity:
        grown = <MapEntry*>realloc(s.maps, 2 * s.capacity * sizeof(MapEntry))
        if grown == NULL:
            return MS_NO_MEMORY
        s.maps = grown
        s.capacity *= 2
    if s.count == 0 or s.maps[s.count - 1].start < e.start:
        i = s.count                                    # the usual case: in order
    else:
        i = ms_lower_bound(s, e.start)
        memmove(s.maps + i + 1, s.maps + i, (s.count - i) * sizeof(MapEntry))
    s.maps[i] = e[0]
    s.count += 1
    return MS_NEW


cdef inline const MapEntry* ms_covering(const MapStore* s, int64_t subflow_seq) noexcept nogil:
    """The mapping that holds this subflow byte, or NULL."""
    cdef Py_ssize_t i = ms_lower_bound(s, subflow_seq + 1) - 1
    while i >= 0 and s.maps[i].start > subflow_seq - MS_MAX_PAYLOAD:
        if subflow_seq < s.maps[i].end:
            return &s.maps[i]
        i -= 1
    if s.has_infinite and subflow_seq >= s.infinite.start:
        return &s.infinite
    return NULL


cdef inline void ms_release(MapStore* s, int64_t upto) noexcept nogil:
    """Forget the mappings that end at or before ``upto``."""
    cdef Py_ssize_t i, kept = 0
    for i in range(s.count):
        if s.maps[i].end > upto:
            s.maps[kept] = s.maps[i]
            kept += 1
    s.count = kept
