"""The serving edge: TLS, deadlines, limits and draining inside waitress's own loop.

`channel` is one connection (waitress's HTTP channel with TLS through memory BIOs),
`listener` one listening port (waitress's server with a connection limit that sheds
the slowest client), `limits` holds the timeouts, sizes and the budget for large
bodies. waitress is the only HTTP parser. It imports the standard library, waitress,
`app.logs` and `app.admission.responses` (the JSON body of its own error answers).
"""
