"""Benchmarks: `python -m bench.server` (the server beside its ceiling, under wrk) and
`python -m bench.modes` (Pod-creation latency per mode on the local control plane).

They print figures and assert nothing.

May import: the standard library, `app` (the ceiling answers with the same core),
`tests.certs` (throwaway certificates, whose one home is there) and third-party
packages pinned in requirements*.txt. Nothing imports `bench`.
"""
