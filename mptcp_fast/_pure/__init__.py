"""Pure-Python twins of the compiled hot-path modules (DESIGN.md, "Two backends, one API")."""
