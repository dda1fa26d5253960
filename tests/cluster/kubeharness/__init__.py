"""Test harness: a local Kubernetes cluster with one real node.

Modules:
- ``binaries``: where the binaries built by ``tests/cluster/build.sh`` live.
- ``procs``: starting and reaping process groups, with an orphan check.
- ``controlplane``: certificates, etcd, the API server, controller manager and
  scheduler; starts and stops the whole cluster.
- ``node``: containerd + runc, the kubelet and kube-proxy: configs, cgroups, clean-up.
- ``network``: the pod bridge and its CNI config; the iptables sweep.
- ``oci``: a one-layer OCI archive from a few files (the pause image).
- ``imagebuild``: real images with buildah (base, image/Dockerfile, sample apps, busybox).
- ``images``: ``NodeImages``, which imports those into the node.
- ``kubeapi``: a minimal aiohttp JSON client for the apiserver (watches).
- ``manifests``: pod/Job/Deployment dict builders; ``wait``: the polling-assertion helper.
"""
