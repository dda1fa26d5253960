"""Test harness: a local Kubernetes control plane and a pod runner that executes pods.

Modules:
- ``binaries``: where the binaries built by ``tests/cluster/build.sh`` live.
- ``procs``: starting and reaping process groups, with an orphan check.
- ``controlplane``: certificates, etcd, kube-apiserver, kube-controller-manager.
- ``images``: the image table (image name -> local "image filesystem").
- ``podspec``: pure translation of a pod spec into process launch plans and statuses.
- ``podrunner``: the kubelet stand-in (binds pods, runs them, writes pods/status).
- ``wait``: the polling-assertion helper.
"""
