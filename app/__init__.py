"""pod-labeler: a Kubernetes mutating admission webhook that labels every new Pod."""
