# Marks pyx/mptcp_fast/ as the package mptcp_fast for Cython's cimport lookups.
