"""Backfill throughput on the local control plane: how fast `pod-labeler backfill --apply`
labels Pods that were running before the release, and how many API requests it makes.

    make up && python -m bench.backfill [--pods 2000] [--qps 0]

Creates N unlabelled Pods in a namespace that has opted out (`pod-labeler/skip=true`,
so the installed release leaves them alone), opts it back in, then runs the backfill
(the same code as the command, in this process) and prints Pods/s and API requests per
Pod, then a second run's figures (nothing left to patch). `--qps 0` (the default here)
measures the API server and the tool, not the rate limit; the command's own default is
20/s. The Pods name a scheduler that does not exist (UNSCHEDULED), so they stay Pending
and nothing writes their status: 2,000 Pods would not fit the local node (110 at most),
and the kubelet's status writes for those it ran would each cost a conflict and a retry,
which measures the node, not the tool (on 2026-12-02, with the Pods scheduled: 34 Pods/s
and 523 conflicts, against the figures in docs/performance.md without). Labels do not
depend on it. Deletes the namespace afterwards. Asserts nothing: these are figures for
docs/performance.md.
"""

from __future__ import annotations

import argparse
import io
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lightkube.models.core_v1 import Container, PodSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Pod

from app.backfill.kube import Kube
from app.backfill.release import settings_from_objects
from app.backfill.run import Summary, Target, backfill
from app.backfill.selection import Scope

ROOT = Path(__file__).resolve().parents[1]
KUBECONFIG = os.environ.get("KUBECONFIG", str(ROOT / ".cache" / "run" / "kubeconfig"))
RELEASE, RELEASE_NAMESPACE = "webhook", "pod-labeler"
OPT_OUT = "pod-labeler/skip"
CREATORS = 4
UNSCHEDULED = "bench-unscheduled"


def create_pods(kube: Kube, namespace: str, count: int) -> None:
    def create(index: int) -> None:
        pod = Pod(
            metadata=ObjectMeta(name=f"bench-{index}", labels={"app": "bench"}),
            spec=PodSpec(
                containers=[Container(name="pause", image="registry.k8s.io/pause:3.10")],
                schedulerName=UNSCHEDULED,
            ),
        )
        kube.client.create(pod, namespace=namespace)

    with ThreadPoolExecutor(CREATORS) as pool:
        list(pool.map(create, range(count)))


def timed_backfill(kube: Kube, target: Target) -> tuple[Summary, float, int]:
    before = kube.requests
    started = time.perf_counter()
    summary = backfill(kube, target, apply=True, out=io.StringIO(), err=io.StringIO())
    return summary, time.perf_counter() - started, kube.requests - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=2000)
    parser.add_argument("--qps", type=float, default=0, help="the backfill's rate limit; 0: none")
    args = parser.parse_args()

    setup = Kube.connect(KUBECONFIG)
    namespace = f"bench-backfill-{uuid.uuid4().hex[:6]}"
    setup.client.create(Namespace(metadata=ObjectMeta(name=namespace, labels={OPT_OUT: "true"})))
    try:
        print(f"creating {args.pods} unlabelled Pods in {namespace} (opted out)...", flush=True)
        create_pods(setup, namespace, args.pods)
        setup.client.patch(Namespace, namespace, {"metadata": {"labels": {OPT_OUT: None}}})

        kube = Kube.connect(KUBECONFIG, qps=args.qps)
        settings = settings_from_objects(
            kube.admission_objects(RELEASE), RELEASE, RELEASE_NAMESPACE
        )
        scope = Scope(
            release_namespace=RELEASE_NAMESPACE,
            namespace_selector=settings.namespace_selector,
            object_selector=settings.object_selector,
            only=(namespace,),
        )
        target = Target(policy=settings.policy, scope=scope, source=settings.source)
        print(f"release: {settings.source}, qps limit: {args.qps:g} (0: none)")
        for run in ("first run", "second run"):
            summary, seconds, requests = timed_backfill(kube, target)
            print(
                f"{run}: {summary.line()} in {seconds:.2f} s: "
                f"{args.pods / seconds:.0f} Pods/s, "
                f"{requests} API requests, {requests / args.pods:.3f} per Pod"
            )
        kube.close()
    finally:
        setup.client.delete(Namespace, namespace)
        setup.close()


if __name__ == "__main__":
    main()
