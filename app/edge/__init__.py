"""The serving edge, inside waitress's own loop: `server` (its channel and server, with
TLS on memory BIOs, deadlines, shedding) and `limits`. waitress is the only HTTP parser.
Imports: the standard library, waitress, `app.logs`, itself."""
