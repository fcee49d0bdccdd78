"""The serving edge, inside waitress's own loop: `channel` (one connection, TLS on
memory BIOs), `listener` (one port, its limit and shedding), `limits`. waitress is the
only HTTP parser. Imports: the standard library, waitress, `app.logs`, itself."""
