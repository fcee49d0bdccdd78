"""`audit` and `backfill`: the command-line verbs, added to `app.main`'s parser by
`register`. The Kubernetes client is imported only when one of them runs, so `serve`
never loads it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from app.admission.policy import InvalidPolicy, LabelPolicy, parse_label
from app.backfill.selection import LabelSelector, Scope, SelectorError, check_selector

DEFAULT_QPS = 20.0
ENV_PREFIX = "POD_LABELER_"
# Exit statuses of `audit` (and `backfill`): 0 all good, 1 Pods lack labels (a patch
# failed), 2 the check itself could not be made.
OK, LACKING, ERROR = 0, 1, 2


def register(commands: Any) -> None:
    """Add `audit` and `backfill` to `commands` (argparse subparsers)."""
    common = _common_options()
    audit = commands.add_parser(
        "audit",
        parents=[common],
        help="list running Pods the release would have labelled that lack the labels",
        description="List the Pods that the installed release would label at creation "
        "but that lack the labels, by namespace and owner, and whether each owner's Pod "
        "template carries them. Exit status: 0 every Pod carries the labels, 1 some do "
        "not, 2 the audit could not be made.",
    )
    audit.add_argument("-o", "--output", choices=("text", "json"), default="text")
    backfill = commands.add_parser(
        "backfill",
        parents=[common],
        help="label the running Pods that lack the labels (a dry run without --apply)",
        description="Patch each selected Pod's labels with exactly the changes the "
        "webhook would have made at its creation. Without --apply, print them. Exit "
        "status: 0 done, 1 some Pods could not be patched, 2 it could not run.",
    )
    backfill.add_argument("--apply", action="store_true", help="patch the Pods")
    backfill.add_argument(
        "--qps",
        type=float,
        default=DEFAULT_QPS,
        metavar="N",
        help=f"API requests per second at most; 0 for no limit (default {DEFAULT_QPS:g})",
    )
    audit.set_defaults(run=_audit, parser=audit)
    backfill.set_defaults(run=_backfill, parser=backfill, output="text")


def _common_options() -> argparse.ArgumentParser:
    """The options both verbs take: which cluster and release, and what to check."""
    common = argparse.ArgumentParser(add_help=False)
    cluster = common.add_argument_group("cluster")
    cluster.add_argument(
        "--kubeconfig",
        help="kubeconfig file (default: KUBECONFIG, then ~/.kube/config, or in-cluster)",
    )
    cluster.add_argument("--context", help="kubeconfig context (default: its current context)")
    cluster.add_argument(
        "--release",
        default=os.environ.get(f"{ENV_PREFIX}RELEASE", "webhook"),
        help=f"the installed release to read (env {ENV_PREFIX}RELEASE; default webhook)",
    )
    cluster.add_argument(
        "-n",
        "--namespace",
        default=os.environ.get(f"{ENV_PREFIX}NAMESPACE", "pod-labeler"),
        help=f"the release's namespace, never touched (env {ENV_PREFIX}NAMESPACE; "
        "default pod-labeler)",
    )
    what = common.add_argument_group(
        "what to check (each replaces what the release says; read from it otherwise)"
    )
    what.add_argument(
        "--label",
        dest="labels",
        action="append",
        metavar="KEY=VALUE",
        help="a label every Pod must carry; repeat for more",
    )
    what.add_argument(
        "--overwrite",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a Pod with one of the labels at another value is wrong (--overwrite) or fine",
    )
    what.add_argument(
        "--namespace-selector",
        metavar="JSON",
        type=_selector,
        help="the namespaceSelector, as the webhook's (JSON LabelSelector)",
    )
    what.add_argument(
        "--object-selector",
        metavar="JSON",
        type=_selector,
        help="the objectSelector (JSON LabelSelector); default: every Pod",
    )
    what.add_argument(
        "--in",
        dest="only",
        action="append",
        metavar="NAMESPACE",
        default=[],
        help="look only in this namespace; repeat for more (default: all)",
    )
    return common


def _selector(text: str) -> LabelSelector:
    try:
        return check_selector(json.loads(text), "the selector")
    except (ValueError, SelectorError) as error:
        raise argparse.ArgumentTypeError(f"not a LabelSelector: {error}") from error


def _policy(args: argparse.Namespace, base: LabelPolicy | None) -> LabelPolicy:
    labels = tuple(parse_label(item) for item in args.labels) if args.labels else None
    overwrite = args.overwrite
    if base is not None:
        labels = labels or base.labels
        overwrite = base.overwrite if overwrite is None else overwrite
    return LabelPolicy(labels=labels or (), overwrite=True if overwrite is None else overwrite)


def _needs_release(args: argparse.Namespace) -> bool:
    return not (args.labels and args.overwrite is not None and args.namespace_selector is not None)


def _connect(args: argparse.Namespace) -> Any:
    from app.backfill.kube import Kube

    return Kube.connect(args.kubeconfig, args.context, qps=getattr(args, "qps", 0))


def _target(args: argparse.Namespace, api: Any) -> Any:
    from app.backfill.release import settings_from_objects
    from app.backfill.run import Target

    if _needs_release(args):
        found = settings_from_objects(
            api.admission_objects(args.release), args.release, args.namespace
        )
        source = f"release {args.release} in {args.namespace} ({found.mode} mode, {found.source})"
        base: LabelPolicy | None = found.policy
        namespace_selector, object_selector = found.namespace_selector, found.object_selector
    else:
        source, base, namespace_selector, object_selector = "the command line", None, {}, {}
    if args.namespace_selector is not None:
        namespace_selector = args.namespace_selector
    if args.object_selector is not None:
        object_selector = args.object_selector
    scope = Scope(
        release_namespace=args.namespace,
        namespace_selector=namespace_selector,
        object_selector=object_selector,
        only=tuple(args.only),
    )
    return Target(policy=_policy(args, base), scope=scope, source=source)


def _guarded(args: argparse.Namespace, work: Any) -> int:
    """Run `work(api, target)`; anything that stops it is a message and exit status 2."""
    import httpx2
    from lightkube import ApiError

    from app.backfill.kube import KubeError
    from app.backfill.release import ReleaseError

    try:
        with _connect(args) as api:
            return int(work(api, _target(args, api)))
    except InvalidPolicy as error:
        args.parser.error(str(error))
    except ApiError as error:
        _stderr(f"error: the API server refused a request: {error.status.code} {error}")
    except (KubeError, ReleaseError) as error:
        _stderr(f"error: {error}")
    except httpx2.HTTPError as error:
        _stderr(f"error: cannot reach the API server: {error}")
    return ERROR


def _audit(settings: Any) -> int:
    args: argparse.Namespace = settings.args

    def work(api: Any, target: Any) -> int:
        from app.backfill.run import audit, print_audit

        report = audit(api, target)
        if args.output == "json":
            sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
        else:
            print_audit(report, sys.stdout)
        return LACKING if report.lacking else OK

    return _guarded(args, work)


def _backfill(settings: Any) -> int:
    args: argparse.Namespace = settings.args
    if args.qps < 0:
        args.parser.error("--qps must not be negative")

    def work(api: Any, target: Any) -> int:
        from app.backfill.run import backfill

        print(
            f"Labelling from {target.source}: "
            + ", ".join(f"{k}={v}" for k, v in target.policy.labels)
            + f" (overwrite: {str(target.policy.overwrite).lower()})",
            flush=True,
        )
        summary = backfill(api, target, apply=args.apply)
        print(summary.line() + ("" if args.apply else " (dry run: --apply to patch)"))
        return LACKING if summary.failed else OK

    return _guarded(args, work)


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
