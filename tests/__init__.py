"""The tests: `tests/unit` (seconds, no cluster) and `tests/e2e` (`-m e2e`, against the
cluster KUBECONFIG names), and what both share (`tests/certs.py`).

May import:
- `tests/unit`: `app`, `tests` itself and test libraries; `localcp` only from
  `tests/unit/localcp`, which tests it. Fixtures live under `tests/`, not in `localcp`
  or `bench`.
- `tests/e2e`: `tests` itself and test libraries; never `app`, `localcp` or `bench`:
  it reaches the cluster only through kubectl and helm, so the same suite runs on the
  local control plane and on kind. The one exception is `app.backfill`, itself a
  cluster client, which the backfill tests call in-process.
- `tests/certs.py`: the standard library and `cryptography` only, because `bench`
  imports it too.

pyproject.toml states these as import-linter contracts (`lint-imports`, `make lint`).
"""
