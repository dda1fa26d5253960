"""Test harness: a local Kubernetes control plane and a pod runner that executes pods.

Modules:
- ``binaries``: where the binaries built by ``tests/cluster/build.sh`` live.
- ``procs``: starting and reaping process groups, with an orphan check.
- ``controlplane``: certificates, etcd, kube-apiserver, kube-controller-manager.
- ``images``: the image table (image name -> local "image filesystem").
- ``podspec``: pure translation of a pod spec into process launch plans and statuses.
- ``kubelet``: the kubelet stand-in process (node, binding, one ``PodWorker`` per pod).
- ``podworker``: one pod's volumes, containers and pods/status writes.
- ``podrunner``: the test-side handle that starts and stops the kubelet process.
- ``kubeapi``: a minimal aiohttp JSON client for the apiserver.
- ``manifests``: pod/Job/Deployment dict builders; ``wait``: the polling-assertion helper.
"""
