"""Pure-Python twins of the compiled hot-path modules (docs/design.md, "Two backends, one API")."""
