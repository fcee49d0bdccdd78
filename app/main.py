"""Command line: `serve` runs the webhook, `mutate` shows what it would do to a file.

Every flag has an environment variable (named in --help), for the Helm chart.
Precedence: flag, then environment, then default. A setting that cannot be used
stops the program with exit status 2 and a message naming it, like any argparse
usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from app.admission import InvalidReview
from app.admission.simulate import simulate
from app.config import (
    DEFAULT_LABELS,
    DEFAULT_MAX_BODY_BYTES,
    ConfigError,
    LabelPolicy,
    ServerConfig,
    parse_label,
    parse_label_list,
)
from app.logs import configure

T = TypeVar("T")

DEFAULTS = ServerConfig(tls_cert=Path(), tls_key=Path())
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class _Environment:
    """Reads WEBHOOK_* variables, turning a malformed one into a usage error."""

    def __init__(self, environ: Mapping[str, str], parser: argparse.ArgumentParser) -> None:
        self._environ = environ
        self._parser = parser

    def get(self, name: str, convert: Callable[[str], T], default: T) -> T:
        text = self._environ.get(name, "")
        if not text:
            return default
        try:
            return convert(text)
        except ValueError:
            self._parser.error(f"environment variable {name}={text!r} is not valid")

    def boolean(self, name: str, default: bool) -> bool:
        text = self._environ.get(name, "").strip().lower()
        if not text:
            return default
        if text in _TRUE | _FALSE:
            return text in _TRUE
        self._parser.error(f"environment variable {name}={text!r} must be true or false")


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app.main",
        description="A Kubernetes mutating admission webhook that labels every new Pod.",
    )
    env = _Environment(environ, parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    labels = argparse.ArgumentParser(add_help=False)
    label_options = labels.add_argument_group("labels")
    label_options.add_argument(
        "--label",
        dest="labels",
        action="append",
        metavar="KEY=VALUE",
        help="a label every new Pod gets; repeat for more "
        "(env WEBHOOK_LABELS as k=v,k2=v2; default: "
        + ",".join(f"{k}={v}" for k, v in DEFAULT_LABELS)
        + ")",
    )
    label_options.add_argument(
        "--overwrite",
        action=argparse.BooleanOptionalAction,
        default=env.boolean("WEBHOOK_OVERWRITE", True),
        help="replace a label the Pod already has with a different value, with a warning "
        "to the user; --no-overwrite keeps the Pod's value (env WEBHOOK_OVERWRITE=false; "
        "default: overwrite)",
    )

    serve = commands.add_parser(
        "serve",
        parents=[labels],
        help="serve the webhook over HTTPS",
        description="Serve POST /mutate, GET /healthz, /readyz and /metrics over HTTPS. "
        "On SIGTERM or SIGINT, /readyz fails for --shutdown-delay while requests are still "
        "served; then in-flight requests drain and it exits 0.",
    )
    serve.add_argument(
        "--tls-cert",
        type=Path,
        default=env.get("WEBHOOK_TLS_CERT", Path, None),
        metavar="CERT",
        help="PEM certificate (chain) file, reloaded when it changes (env WEBHOOK_TLS_CERT)",
    )
    serve.add_argument(
        "--tls-key",
        type=Path,
        default=env.get("WEBHOOK_TLS_KEY", Path, None),
        metavar="KEY",
        help="PEM private key file, reloaded with the certificate (env WEBHOOK_TLS_KEY)",
    )
    serve.add_argument(
        "--host",
        default=env.get("WEBHOOK_HOST", str, DEFAULTS.host),
        help=f"address to listen on (env WEBHOOK_HOST; default {DEFAULTS.host})",
    )
    serve.add_argument(
        "--port",
        type=int,
        default=env.get("WEBHOOK_PORT", int, DEFAULTS.port),
        help=f"HTTPS port; 0 picks a free one (env WEBHOOK_PORT; default {DEFAULTS.port})",
    )
    serve.add_argument(
        "--cert-reload-interval",
        type=float,
        default=env.get("WEBHOOK_CERT_RELOAD_INTERVAL", float, DEFAULTS.cert_reload_interval),
        metavar="SECONDS",
        help="how often to check the certificate files for a change "
        f"(env WEBHOOK_CERT_RELOAD_INTERVAL; default {DEFAULTS.cert_reload_interval:g})",
    )
    serve.add_argument(
        "--threads",
        type=int,
        default=env.get("WEBHOOK_THREADS", int, DEFAULTS.threads),
        help=f"waitress worker threads (env WEBHOOK_THREADS; default {DEFAULTS.threads})",
    )
    serve.add_argument(
        "--max-body-bytes",
        type=int,
        default=env.get("WEBHOOK_MAX_BODY_BYTES", int, DEFAULT_MAX_BODY_BYTES),
        metavar="BYTES",
        help="larger request bodies get 413 "
        f"(env WEBHOOK_MAX_BODY_BYTES; default {DEFAULT_MAX_BODY_BYTES}, 3 MiB)",
    )
    serve.add_argument(
        "--shutdown-delay",
        type=float,
        default=env.get("WEBHOOK_SHUTDOWN_DELAY", float, DEFAULTS.shutdown_delay),
        metavar="SECONDS",
        help="on SIGTERM, keep accepting new connections this long, with /readyz failing, "
        "before draining, so the API server stops picking this Pod first "
        f"(env WEBHOOK_SHUTDOWN_DELAY; default {DEFAULTS.shutdown_delay:g})",
    )
    serve.add_argument(
        "--drain-timeout",
        type=float,
        default=env.get("WEBHOOK_DRAIN_TIMEOUT", float, DEFAULTS.drain_timeout),
        metavar="SECONDS",
        help="on SIGTERM, how long in-flight requests may take before connections are cut "
        f"(env WEBHOOK_DRAIN_TIMEOUT; default {DEFAULTS.drain_timeout:g})",
    )

    mutate = commands.add_parser(
        "mutate",
        parents=[labels],
        help="print an object as the webhook would change it",
        description="Read a Pod (YAML or JSON) or an AdmissionReview and print the object "
        "as the webhook would admit it, as YAML. Warnings go to stderr.",
    )
    mutate.add_argument("file", metavar="FILE", help="the file to read, or - for stdin")
    serve.set_defaults(run=_serve, parser=serve)
    mutate.set_defaults(run=_mutate, parser=mutate)
    parser.set_defaults(environ=environ)
    return parser


def _policy(args: argparse.Namespace, parser: argparse.ArgumentParser) -> LabelPolicy:
    environ: Mapping[str, str] = args.environ
    try:
        if args.labels:
            labels = tuple(parse_label(item) for item in args.labels)
        elif environ.get("WEBHOOK_LABELS", "").strip():
            labels = parse_label_list(environ["WEBHOOK_LABELS"])
        else:
            labels = DEFAULT_LABELS
        return LabelPolicy(labels=labels, overwrite=args.overwrite)
    except ConfigError as error:
        parser.error(str(error))


def _server_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> ServerConfig:
    policy = _policy(args, parser)
    if args.tls_cert is None or args.tls_key is None:
        parser.error(
            "--tls-cert and --tls-key (or WEBHOOK_TLS_CERT and WEBHOOK_TLS_KEY) are required"
        )
    try:
        config = ServerConfig(
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            policy=policy,
            host=args.host,
            port=args.port,
            cert_reload_interval=args.cert_reload_interval,
            threads=args.threads,
            max_body_bytes=args.max_body_bytes,
            shutdown_delay=args.shutdown_delay,
            drain_timeout=args.drain_timeout,
        )
        config.check_files()
    except ConfigError as error:
        parser.error(str(error))
    return config


def _serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    # Imported here so `mutate` and `--help` do not load waitress and the TLS stack.
    from app.serving import serve

    config = _server_config(args, parser)
    configure(logging.INFO)
    try:
        return serve(config)
    except ConfigError as error:  # the certificate does not load, the port is taken
        parser.error(str(error))


def _mutate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    policy = _policy(args, parser)
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    except OSError as error:
        parser.error(f"cannot read {args.file!r}: {error.strerror}")
    try:
        document: Any = yaml.safe_load(text)
        simulation = simulate(document, policy)
    except yaml.YAMLError as error:
        _stderr(f"error: {args.file} is not YAML or JSON: {error}")
        return 1
    except InvalidReview as error:
        _stderr(f"error: {args.file}: {error}")
        return 1
    for warning in simulation.result.warnings:
        _stderr(f"Warning: {warning}")  # as kubectl shows admission warnings
    if simulation.result.changes is None:
        request = simulation.result.request
        _stderr(f"note: not a Pod CREATE ({request.kind.kind} {request.operation}): unchanged")
    # Round-trip through JSON so YAML gets plain types: a date that YAML parsed
    # stays a string, and no Python-specific tags appear.
    plain = json.loads(json.dumps(simulation.object, default=str))
    sys.stdout.write(yaml.safe_dump(plain, sort_keys=False))
    return 0


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")


def config_from(argv: Sequence[str], environ: Mapping[str, str]) -> ServerConfig:
    """The `serve` configuration for these arguments and environment; exits 2 if invalid."""
    args = build_parser(environ).parse_args(["serve", *argv])
    return _server_config(args, args.parser)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = build_parser(os.environ if environ is None else environ)
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace, argparse.ArgumentParser], int] = args.run
    return run(args, args.parser)


if __name__ == "__main__":
    sys.exit(main())
