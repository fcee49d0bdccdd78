"""NOTES.txt: warnings first, then what was installed, then how to see it work."""

from __future__ import annotations


def test_notes_open_with_the_fail_policy_warning(render_notes):
    notes = render_notes()
    assert notes.startswith("WARNING: failurePolicy is Fail.")
    assert "kubectl label namespace NAME pod-labeler/skip=true" in notes


def test_notes_warn_that_ignore_admits_pods_unlabelled(render_notes):
    notes = render_notes("webhook.failurePolicy=Ignore")
    assert notes.startswith("WARNING: failurePolicy is Ignore.")
    assert "WITHOUT the labels" in notes


def test_notes_warn_about_a_single_replica(render_notes):
    assert "WARNING: replicaCount is 1" in render_notes("replicaCount=1")


def test_notes_put_every_warning_before_the_summary(render_notes):
    notes = render_notes("replicaCount=1")
    summary = notes.index("is installed as release")
    assert notes.rindex("WARNING") < summary


def test_notes_list_the_labels_every_pod_gets(render_notes):
    notes = render_notes("label.key=team", "label.value=payments", "extraLabels.tier=web")
    assert "  team=payments\n  tier=web\n" in notes


def test_notes_show_the_commands_that_prove_it_works(render_notes):
    notes = render_notes()
    certificate = "certificate/webhook-pod-labeler-tls"
    assert f"kubectl -n pod-labeler wait --for=condition=Ready {certificate}" in notes
    assert (
        "kubectl get mutatingwebhookconfiguration webhook-pod-labeler"
        " -o jsonpath='{.webhooks[0].clientConfig.caBundle}'" in notes
    )
    assert "kubectl -n webhook-pod-labeler-demo run demo" in notes
    assert "kubectl -n webhook-pod-labeler-demo get pod demo --show-labels" in notes


def test_notes_demo_matches_the_user_selectors(render_notes):
    notes = render_notes(
        "webhook.namespaceSelector.matchLabels.team=a", "webhook.objectSelector.matchLabels.x=y"
    )
    assert "kubectl label namespace webhook-pod-labeler-demo team=a" in notes
    assert "--restart=Never --labels=x=y" in notes
