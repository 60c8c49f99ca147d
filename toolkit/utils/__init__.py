"""Small helpers shared by every subpackage (file I/O, errors, logging)."""
