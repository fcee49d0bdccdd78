"""A real Kubernetes control plane as local processes, for machines without Docker.

etcd, kube-apiserver, kube-controller-manager and cert-manager's controller and
cainjector run on loopback from binaries built by hack/install.sh; the chart is
installed with the real helm; `localcp.kubelet` plays the kubelet for the chart's
Deployment, running its container command in network namespaces so that the API
server reaches the webhook through its Service over real TLS.
"""
