"""The series a PromQL expression reads, from promql-parser's parse tree: what the chart
tests check against the server's registry and the e2e tests against its metrics port."""

from __future__ import annotations

from collections.abc import Iterator

import promql_parser

# Series Prometheus makes itself for every target, rather than the server.
PROMETHEUS_SERIES = frozenset({"up"})


def series_in(expression: str) -> set[str]:
    """The metric names `expression` selects (not its label names, functions or
    keywords). Grafana's `$__rate_interval` is not PromQL: it is given a duration first."""
    tree = promql_parser.parse(expression.replace("$__rate_interval", "5m"))
    return {name for selector in _vector_selectors(tree) if (name := selector.name)}


def _vector_selectors(node: object) -> Iterator[promql_parser.VectorSelector]:
    if isinstance(node, promql_parser.VectorSelector):
        yield node
        return
    if isinstance(node, promql_parser.MatrixSelector):
        yield node.vector_selector
        return
    for attribute in ("expr", "lhs", "rhs", "param"):
        child = getattr(node, attribute, None)
        if child is not None:
            yield from _vector_selectors(child)
    for argument in getattr(node, "args", None) or ():
        yield from _vector_selectors(argument)
