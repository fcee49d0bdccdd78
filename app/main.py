"""Command line: `serve` runs the webhook, `mutate` shows what it would do to a file.

Every flag has an environment variable (named in --help), for the Helm chart.
Precedence: flag, then environment, then default. A setting that cannot be used
stops the program with exit status 2 and a message naming it, like any argparse
usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any

import yaml

from app.admission import InvalidPolicy, InvalidReview, LabelPolicy
from app.admission.policy import DEFAULT_LABELS, parse_label, parse_label_list
from app.admission.simulate import simulate
from app.backfill import register as register_backfill
from app.config import LOG_LEVELS, ConfigError, ServerConfig
from app.logs import configure, fields

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
ENV_PREFIX = "WEBHOOK_"
log = logging.getLogger("pod_labeler.serving")
SERVER_DEFAULTS = {
    item.name: item.default
    for item in dataclasses.fields(ServerConfig)
    if item.default is not MISSING
}


@dataclass(frozen=True)
class Option:
    """One `serve` setting: a ServerConfig field, its flag and its environment variable,
    both derived from the field's name, and its default taken from ServerConfig."""

    field: str
    help: str
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.field.upper()

    @property
    def default(self) -> Any:
        return SERVER_DEFAULTS.get(self.field)

    @property
    def convert(self) -> Callable[[str], Any]:
        return Path if self.field.startswith("tls_") else type(self.default)

    def help_text(self) -> str:
        default = self.default
        shown = (
            ""
            if default is None
            else f"; default {default:g}"
            if isinstance(default, float)
            else f"; default {default}"
        )
        return f"{self.help} (env {self.env}{shown})"


SERVE_OPTIONS = (
    Option("tls_cert", "PEM certificate (chain) file, reloaded when it changes", "CERT"),
    Option("tls_key", "PEM private key file (unencrypted), reloaded with the certificate", "KEY"),
    Option("host", "address of the HTTPS admission port"),
    Option("port", "HTTPS admission port; 0 picks a free one"),
    Option("metrics_host", "address of the plain-HTTP metrics port"),
    Option("metrics_port", "plain-HTTP port serving /metrics only; 0 picks a free one"),
    Option("log_level", f"one of {', '.join(LOG_LEVELS)}", "LEVEL"),
    Option(
        "cert_reload_interval", "how often to check the certificate files for a change", "SECONDS"
    ),
    Option("threads", "waitress worker threads"),
    Option("handshake_timeout", "a TLS handshake not done by then is closed", "SECONDS"),
    Option(
        "header_timeout",
        "a request head not complete this long after its first byte gets 408",
        "SECONDS",
    ),
    Option(
        "min_request_rate",
        "a request still arriving must bring this many bytes a second over each "
        "header-timeout window, else it gets 408",
        "BYTES",
    ),
    Option(
        "request_timeout",
        "an exchange not done this long after its first byte is closed "
        "(the API server waits 30 s at most)",
        "SECONDS",
    ),
    Option(
        "idle_timeout", "a kept-alive connection with no request this long is closed", "SECONDS"
    ),
    Option("max_header_bytes", "a larger request head (its blank line included) gets 431", "BYTES"),
    Option(
        "max_body_bytes",
        "a larger body gets 413, from its Content-Length before it is read (3 MiB)",
        "BYTES",
    ),
    Option(
        "max_buffered_bytes",
        "memory for bodies over 64 KiB over all connections, each reserved whole from its "
        "head; a body that does not fit waits, unread",
        "BYTES",
    ),
    Option(
        "max_connections",
        "admission port's connection limit; 0 sizes it from the open-files and memory limits",
        "N",
    ),
    Option(
        "shutdown_delay",
        "on SIGTERM, keep serving this long with /readyz failing and every response closing "
        "its connection, so the API server moves to another replica",
        "SECONDS",
    ),
    Option(
        "drain_timeout",
        "then, how long open exchanges may take before connections are cut",
        "SECONDS",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pod-labeler",  # also `python -m app.main`
        description="A Kubernetes mutating admission webhook that labels every new Pod.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    labels = argparse.ArgumentParser(add_help=False)
    label_options = labels.add_argument_group("labels")
    label_options.add_argument(
        "--label",
        dest="labels",
        action="append",
        metavar="KEY=VALUE",
        help="a label every new Pod gets; repeat for more "
        f"(env {ENV_PREFIX}LABELS as k=v,k2=v2; default: "
        + ",".join(f"{k}={v}" for k, v in DEFAULT_LABELS)
        + ")",
    )
    label_options.add_argument(
        "--overwrite",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="replace a label the Pod already has with a different value, with a warning "
        f"to the user; --no-overwrite keeps the Pod's value (env {ENV_PREFIX}OVERWRITE=false; "
        "default: overwrite)",
    )
    serve = commands.add_parser(
        "serve",
        parents=[labels],
        help="serve the webhook over HTTPS",
        description="Serve POST /mutate, GET /healthz and /readyz over HTTPS, and GET /metrics "
        "over plain HTTP on its own port. On SIGTERM or SIGINT, /readyz fails and every "
        "response closes its connection for --shutdown-delay while requests are still served; "
        "then open exchanges drain and it exits 0.",
    )
    for option in SERVE_OPTIONS:
        serve.add_argument(
            option.flag,
            dest=option.field,
            metavar=option.metavar,
            help=option.help_text(),
            type=option.convert,
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
    register_backfill(commands)  # audit, backfill
    return parser


class _Settings:
    """Each setting's value: the flag, else its environment variable, else the default.
    A malformed variable is a usage error naming it."""

    def __init__(self, args: argparse.Namespace, environ: Mapping[str, str]) -> None:
        self.args, self.environ = args, environ
        self.parser: argparse.ArgumentParser = args.parser

    def value(self, option: Option) -> Any:
        given = getattr(self.args, option.field)
        if given is not None:
            return given
        text = self.environ.get(option.env, "")
        if not text:
            return option.default
        try:
            return option.convert(text)
        except ValueError:
            self.parser.error(f"environment variable {option.env}={text!r} is not valid")

    def overwrite(self) -> bool:
        if self.args.overwrite is not None:
            return bool(self.args.overwrite)
        name = f"{ENV_PREFIX}OVERWRITE"
        text = self.environ.get(name, "").strip().lower()
        if not text:
            return True
        if text in _TRUE | _FALSE:
            return text in _TRUE
        self.parser.error(f"environment variable {name}={text!r} must be true or false")

    def policy(self) -> LabelPolicy:
        listed = self.environ.get(f"{ENV_PREFIX}LABELS", "").strip()
        try:
            if self.args.labels:
                labels = tuple(parse_label(item) for item in self.args.labels)
            elif listed:
                labels = parse_label_list(listed)
            else:
                labels = DEFAULT_LABELS
            return LabelPolicy(labels=labels, overwrite=self.overwrite())
        except InvalidPolicy as error:
            self.parser.error(str(error))

    def server_config(self) -> ServerConfig:
        values = {option.field: self.value(option) for option in SERVE_OPTIONS}
        if values["tls_cert"] is None or values["tls_key"] is None:
            self.parser.error(
                "--tls-cert and --tls-key (or WEBHOOK_TLS_CERT and WEBHOOK_TLS_KEY) are required"
            )
        try:
            config = ServerConfig(policy=self.policy(), **values)
            config.check_files()
        except ConfigError as error:
            self.parser.error(str(error))
        return config


def _serve(settings: _Settings) -> int:
    config = settings.server_config()
    configure(getattr(logging, config.log_level.upper()))
    try:
        return serve(config)
    except ConfigError as error:  # the certificate does not load, the port is taken
        settings.parser.error(str(error))


def serve(config: ServerConfig) -> int:
    """Run until SIGTERM or SIGINT; then fail /readyz and close every connection after
    its next response for the shutdown delay while still serving, drain, and return 0.
    A second signal forces exit. The signals are blocked before any thread exists, so
    that only sigwait gets them: a Python handler may never run if a worker thread
    takes the signal while the main thread waits."""
    signals = {signal.SIGTERM, signal.SIGINT}
    # Imported here so `mutate` and `--help` do not load waitress and the TLS stack.
    from prometheus_client import CollectorRegistry, ProcessCollector

    from app.serving import WebhookServer

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    server = WebhookServer(config, registry=registry)
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        server.start()
        received = signal.sigwait(signals)
    finally:
        # A second SIGTERM now terminates at once; a second SIGINT raises KeyboardInterrupt.
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
    log.info(
        "signal received",
        extra=fields(signal=signal.Signals(received).name, delay_seconds=config.shutdown_delay),
    )
    server.stop_being_ready()
    time.sleep(config.shutdown_delay)
    server.shutdown()
    return 0


def _mutate(settings: _Settings) -> int:
    args, parser = settings.args, settings.parser
    policy = settings.policy()
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
    args = build_parser().parse_args(["serve", *argv])
    return _Settings(args, environ).server_config()


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[_Settings], int] = args.run
    return run(_Settings(args, os.environ if environ is None else environ))


if __name__ == "__main__":
    sys.exit(main())
