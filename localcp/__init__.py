"""A real Kubernetes control plane as local processes, for machines without Docker.

etcd, kube-apiserver, kube-controller-manager and cert-manager's controller and
cainjector run on loopback from binaries built by hack/install.sh; the chart is
installed with the real helm; `localcp.kubelet` plays the kubelet for the chart's
Deployment, running its container command in network namespaces so that the API
server reaches the webhook through its Service over real TLS.

May import: the standard library, `cryptography` (pki.py) and `localcp` itself. Never
`app` (it runs the server only as a process, from the chart's container command),
`bench` or `tests`. It reaches the cluster only through kubectl and helm (kube.py).
"""
