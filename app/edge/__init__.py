"""The serving edge: TLS, deadlines, limits and draining in front of waitress.

`front` runs the connections (asyncio), `framing` finds where HTTP messages end (pure),
`limits` holds the timeouts and sizes. It imports the standard library, `app.logs` and
`app.admission.responses` (the JSON body of its own error answers), nothing else of the app.
"""
