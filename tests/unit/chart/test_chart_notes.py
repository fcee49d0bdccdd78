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


def test_notes_say_auto_picked_the_webhook_because_the_cluster_lacks_the_policy_api(
    render_notes,
):
    notes = render_notes("mode=auto")
    assert "in namespace pod-labeler, in webhook mode\n" in notes
    assert (
        "(auto: this cluster does not serve admissionregistration.k8s.io/v1"
        " MutatingAdmissionPolicy,\nwhich needs Kubernetes 1.36 or later, so the webhook is"
        " installed)." in notes
    )


def test_notes_say_auto_picked_the_policy_because_the_cluster_serves_its_api(
    render_notes, policy_api
):
    notes = render_notes("mode=auto", api_versions=policy_api)
    assert "in namespace pod-labeler, in policy mode\n" in notes
    assert (
        "(auto: this cluster serves admissionregistration.k8s.io/v1 MutatingAdmissionPolicy,"
        " so the\nAPI server sets the labels itself: no webhook Pods, Service or certificates)."
        in notes
    )


def test_notes_for_a_mode_set_by_hand_name_it_without_an_auto_reason(render_notes, policy_api):
    assert "in webhook mode.\n" in render_notes("mode=webhook", api_versions=policy_api)
    assert "in policy mode.\n" in render_notes("mode=policy", api_versions=policy_api)
    assert "auto:" not in render_notes("mode=policy", api_versions=policy_api)


def test_notes_in_policy_mode_show_the_policy_and_no_webhook_objects(render_notes, policy_api):
    notes = render_notes("mode=policy", api_versions=policy_api)
    assert "MutatingAdmissionPolicy webhook-pod-labeler (failurePolicy Fail" in notes
    assert "MutatingAdmissionPolicyBinding webhook-pod-labeler" in notes
    for webhook_only in ("caBundle", "deployment", "Deployment", "certificate/", "Service "):
        assert webhook_only not in notes, webhook_only


def test_notes_in_policy_mode_check_the_policy_then_label_a_demo_pod(render_notes, policy_api):
    notes = render_notes("mode=policy", api_versions=policy_api)
    check = "kubectl get mutatingadmissionpolicy,mutatingadmissionpolicybinding webhook-pod-labeler"
    demo = "kubectl -n webhook-pod-labeler-demo run demo"
    assert check in notes
    assert notes.index(check) < notes.index(demo)
    assert "kubectl -n webhook-pod-labeler-demo get pod demo --show-labels" in notes


def test_notes_in_policy_mode_have_no_webhook_warnings(render_notes, policy_api, app_version):
    notes = render_notes("mode=policy", "replicaCount=1", api_versions=policy_api)
    assert notes.startswith(f"pod-labeler {app_version} is installed as release webhook")
    assert "WARNING" not in notes


def test_notes_in_policy_mode_warn_that_ignore_admits_pods_unlabelled(render_notes, policy_api):
    notes = render_notes("mode=policy", "webhook.failurePolicy=Ignore", api_versions=policy_api)
    assert notes.startswith("WARNING: failurePolicy is Ignore. A Pod for which the policy fails")
    assert "WITHOUT the labels" in notes


def test_notes_in_policy_mode_say_an_overwrite_comes_without_a_warning(render_notes, policy_api):
    notes = render_notes("mode=policy", api_versions=policy_api)
    assert "replaced, without a warning to the\nclient" in notes
    kept = render_notes("mode=policy", "overwrite=false", api_versions=policy_api)
    assert "(a label the Pod already has is left as it is: overwrite is false)" in kept
