"""A real local Kubernetes cluster as processes, for machines without Docker.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, and cert-manager's
controller and cainjector run on the host; one node runs containerd (with runc and
the CNI bridge plugin), a real kubelet and kube-proxy, all built by hack/install.sh.
The webhook's image is built with podman from the project's Dockerfile and handed to
containerd, and the chart is installed with the real helm: the chart's Pods run as
containers of that image, and the API server calls them over real TLS.

May import: the standard library, `cryptography` (pki.py), PyYAML (prometheus.py reads
helm's rendered manifests) and `localcp` itself. Never
`app` (it runs the server only as a container of its image), `bench` or `tests`. It
reaches the cluster only through kubectl and helm (kube.py), and containerd through ctr.
"""
