"""pod-labeler: a Kubernetes mutating admission webhook that labels every new Pod.

Layers, and what each may import (inner ones never import outer ones):
- `app.admission`: the pure core (review in, response out). Standard library only.
- `app.edge`: TLS, deadlines, limits and draining. Standard library, `app.logs`,
  `app.admission.responses`.
- `app.config`, `app.certificates`, `app.metrics`, `app.logs`, `app.http`: the
  server's settings, certificate loading, Prometheus series, JSON logs and the Flask
  routes. These may use the core and their libraries (Flask, prometheus-client,
  cryptography), never `app.serving` or `app.main`.
- `app.serving` wires them into a running process; `app.main` is the command line.
"""
