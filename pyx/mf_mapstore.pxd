# The mappings received on one subflow direction, as plain C (RFC 8684 §3.3.1), shared by
# _dss.pyx (SubflowMappings) and _tracking.pyx (the capture analyzer's fast path).
#
# What is stored is the map itself, not the options that declared it: disjoint subflow
# intervals [start, end), sorted, each on one line of the data sequence space (the DSN of
# its first byte). Overlapping mappings must put the same bytes at the same DSNs (with or
# without a DATA_FIN riding on them); once checked, a mapping is merged with every piece
# it overlaps or touches on the same line. Because the pieces are disjoint, finding the
# piece that holds a byte is one binary search, and a declaration touches only the pieces
# it overlaps (each merged away once): a peer that maps one byte per segment costs
# O(log n) per mapping, not a scan of everything within 64 KiB behind it. Pieces arrive in
# subflow order in the common case and are appended; an out-of-order one is inserted
# with a memmove of the pieces after it.
#
# Subflow sequence numbers are relative, already expanded to 64 bits by the caller, and
# below 2**63 (the callers check that at their API edge). Once an infinite mapping
# (Data-Level Length 0, RFC 8684 §3.7) is in force it decides everything after it.
from libc.stdint cimport int64_t, uint64_t, INT64_MAX
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memmove

cdef enum:
    MS_NEW = 1                   # ms_declare results: some byte was not mapped before
    MS_KNOWN = 0                 # every byte was already mapped the same way
    MS_CONFLICT = -1
    MS_NO_MEMORY = -2


cdef struct MapEntry:
    int64_t start                # first subflow byte
    int64_t end                  # one past the last subflow byte (the DATA_FIN has none)
    uint64_t dsn                 # DSN of the first byte
    int64_t length               # the Data-Level Length as declared; 0 is the infinite mapping
    int64_t checksum             # -1 when the option had none
    bint data_fin


cdef struct MapStore:
    MapEntry* maps               # disjoint pieces, sorted (start and end both increase)
    Py_ssize_t count
    Py_ssize_t capacity
    bint has_infinite
    MapEntry infinite


cdef inline int ms_entry(MapEntry* e, int64_t start, uint64_t dsn, int64_t length,
                         bint data_fin, int64_t checksum) noexcept nogil:
    """Fill ``e``: 0, or -1 (``e`` untouched) when the fields are outside the store's ranges
    (a 16-bit Data-Level Length; subflow bytes from 0 to below 2**63). The callers check
    these at their API; this is the last guard, so that no sum here or in ms_declare can
    overflow int64 (undefined behaviour in C)."""
    cdef int64_t payload = length - 1 if data_fin else length
    if length < 0 or length > 0xFFFF or start < 0:
        return -1
    if payload > 0 and start > INT64_MAX - payload:     # overflow-safe form of start + payload
        return -1
    e.start = start
    e.dsn = dsn
    e.length = length
    e.data_fin = data_fin
    e.checksum = checksum
    e.end = start + payload
    return 0


cdef inline void ms_piece(MapEntry* e, int64_t start, int64_t end, uint64_t dsn) noexcept nogil:
    """A stored piece: reported as a plain mapping of its bytes (merged pieces may be longer
    than one Data-Level Length: set directly, not through ms_entry's checks)."""
    e.start, e.end, e.dsn = start, end, dsn
    e.length, e.checksum, e.data_fin = end - start, -1, False


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


cdef inline Py_ssize_t ms_first_ending_after(const MapStore* s, int64_t value) noexcept nogil:
    """First index whose piece ends after ``value`` (the pieces' ends increase)."""
    cdef Py_ssize_t lo = 0, hi = s.count, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if s.maps[mid].end <= value:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline bint ms_consistent(const MapEntry* old, const MapEntry* new) noexcept nogil:
    """Same DSNs for the bytes both cover. A repeat that adds or drops a DATA_FIN is
    consistent: Linux compares mappings without the DATA_FIN's +1 (mptcp_subflow
    validate_mapping: "If DATA_FIN rides on the last data mapping, data_len++")."""
    cdef int64_t lo = old.start if old.start > new.start else new.start
    return ms_dsn_at(old, lo) == ms_dsn_at(new, lo)


cdef inline int ms_reserve(MapStore* s, Py_ssize_t extra) noexcept nogil:
    cdef MapEntry* grown
    cdef Py_ssize_t capacity = s.capacity
    while s.count + extra > capacity:
        capacity *= 2
    if capacity != s.capacity:
        grown = <MapEntry*>realloc(s.maps, capacity * sizeof(MapEntry))
        if grown == NULL:
            return -1
        s.maps = grown
        s.capacity = capacity
    return 0


cdef inline int ms_declare(MapStore* s, const MapEntry* e, MapEntry* conflict) noexcept nogil:
    """MS_NEW, MS_KNOWN (every byte already mapped so, or any mapping once the infinite one
    is in force), MS_CONFLICT (the contradicted piece is copied to *conflict) or
    MS_NO_MEMORY."""
    cdef Py_ssize_t i, j
    cdef int64_t covered = 0, lo, hi, a, b
    cdef uint64_t line
    if s.has_infinite:
        if e.start >= s.infinite.start and ms_dsn_at(e, e.start) != ms_dsn_at(&s.infinite, e.start):
            conflict[0] = s.infinite
            return MS_CONFLICT
        return MS_KNOWN
    i = ms_first_ending_after(s, e.start)
    if e.length == 0:                                  # the infinite mapping
        for j in range(i, s.count):
            if not ms_consistent(&s.maps[j], e):
                conflict[0] = s.maps[j]
                return MS_CONFLICT
        s.infinite = e[0]
        s.has_infinite = True
        return MS_NEW
    if e.end == e.start:
        return MS_NEW                                  # a standalone DATA_FIN: nothing to store
    j = i
    while j < s.count and s.maps[j].start < e.end:     # the pieces it overlaps
        if not ms_consistent(&s.maps[j], e):
            conflict[0] = s.maps[j]
            return MS_CONFLICT
        a = s.maps[j].start if s.maps[j].start > e.start else e.start
        b = s.maps[j].end if s.maps[j].end < e.end else e.end
        covered += b - a
        j += 1
    if covered == e.end - e.start:
        return MS_KNOWN
    # one piece for the union, on the new mapping's line, with touching neighbours on it
    lo, hi = e.start, e.end
    if i < j and s.maps[i].start < lo:
        lo = s.maps[i].start
    if i < j and s.maps[j - 1].end > hi:
        hi = s.maps[j - 1].end
    if i > 0 and s.maps[i - 1].end == lo and ms_dsn_at(&s.maps[i - 1], lo) == ms_dsn_at(e, lo):
        i -= 1
        lo = s.maps[i].start
    if j < s.count and s.maps[j].start == hi and s.maps[j].dsn == ms_dsn_at(e, hi):
        hi = s.maps[j].end
        j += 1
    line = ms_dsn_at(e, lo)
    if i == j:                                         # nothing to merge: insert
        if ms_reserve(s, 1) < 0:
            return MS_NO_MEMORY
        memmove(s.maps + i + 1, s.maps + i, (s.count - i) * sizeof(MapEntry))
        s.count += 1
    elif j - i > 1:                                    # several pieces become one
        memmove(s.maps + i + 1, s.maps + j, (s.count - j) * sizeof(MapEntry))
        s.count -= j - i - 1
    ms_piece(&s.maps[i], lo, hi, line)
    return MS_NEW


cdef inline const MapEntry* ms_covering(const MapStore* s, int64_t subflow_seq) noexcept nogil:
    """The piece (or the infinite mapping) that holds this subflow byte, or NULL."""
    cdef Py_ssize_t i = ms_first_ending_after(s, subflow_seq)
    if i < s.count and s.maps[i].start <= subflow_seq:
        return &s.maps[i]
    if s.has_infinite and subflow_seq >= s.infinite.start:
        return &s.infinite
    return NULL


cdef inline void ms_release(MapStore* s, int64_t upto) noexcept nogil:
    """Forget the pieces that end at or before ``upto``."""
    cdef Py_ssize_t k = ms_first_ending_after(s, upto)
    if k:
        memmove(s.maps, s.maps + k, (s.count - k) * sizeof(MapEntry))
        s.count -= k
