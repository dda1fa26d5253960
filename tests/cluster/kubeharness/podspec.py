"""Pure pod logic of the pod runner: no I/O, so it is unit-testable.

Pods are plain dicts as the API returns them (camelCase keys). Secrets and
ConfigMaps are passed in already fetched, as ``{name: {key: bytes}}``; a name
missing from the mapping means the object does not exist.
"""

from __future__ import annotations

import base64
import re
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .images import Image

Pod = dict[str, Any]
Objects = dict[str, dict[str, bytes]]  # name -> key -> value
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TERMINATION_MESSAGE_LIMIT = 4096  # bytes kubelet keeps of a termination message
FALLBACK_LOG_LINES = 80  # log lines kubelet uses under FallbackToLogsOnError
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class ContainerConfigError(Exception):
    """The container cannot start: waiting reason CreateContainerConfigError."""


class MountError(Exception):
    """A volume cannot be set up: the pod stays ContainerCreating."""


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- scheduling ---------------------------------------------------------------


def schedulable(pod: Pod, node_labels: dict[str, str]) -> bool:
    """Would a scheduler bind this pod to our node now? (gates, nodeSelector)"""
    spec, meta = pod["spec"], pod["metadata"]
    if spec.get("nodeName") or meta.get("deletionTimestamp"):
        return False
    if spec.get("schedulingGates"):
        return False
    if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
        return False
    selector = spec.get("nodeSelector") or {}
    return all(node_labels.get(k) == v for k, v in selector.items())


# --- references ---------------------------------------------------------------


def referenced(pod: Pod, kind: str) -> set[str]:
    """Names of Secrets (kind="secret") or ConfigMaps ("configMap") the pod uses."""
    key_ref, from_ref = f"{kind}KeyRef", f"{kind}Ref"
    names: set[str] = set()
    spec = pod["spec"]
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        for e in c.get("env") or []:
            ref = (e.get("valueFrom") or {}).get(key_ref)
            if ref:
                names.add(ref["name"])
        for f in c.get("envFrom") or []:
            if f.get(from_ref):
                names.add(f[from_ref]["name"])
    for v in spec.get("volumes") or []:
        names.update(_volume_refs(v, kind))
    return names


def _volume_refs(volume: dict[str, Any], kind: str) -> set[str]:
    field = {"secret": "secretName", "configMap": "name"}[kind]
    names = set()
    if volume.get(kind):
        names.add(volume[kind][field])
    for src in (volume.get("projected") or {}).get("sources") or []:
        if src.get(kind):
            names.add(src[kind]["name"])
    return names


def decode(obj: dict[str, Any], kind: str) -> dict[str, bytes]:
    """A Secret's ``data`` (base64) or a ConfigMap's ``data``/``binaryData`` as bytes."""
    out: dict[str, bytes] = {}
    if kind == "secret":
        for k, v in (obj.get("data") or {}).items():
            out[k] = base64.b64decode(v)
        for k, v in (obj.get("stringData") or {}).items():
            out[k] = v.encode()
    else:
        for k, v in (obj.get("data") or {}).items():
            out[k] = v.encode()
        for k, v in (obj.get("binaryData") or {}).items():
            out[k] = base64.b64decode(v)
    return out


# --- environment --------------------------------------------------------------


def field_value(pod: Pod, path: str) -> str:
    """The downward API fields a kubelet resolves from the pod object."""
    meta, spec = pod["metadata"], pod["spec"]
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
    }
    if path in simple:
        return str(simple[path])
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str((meta.get(m[1]) or {}).get(m[2], ""))
    raise ContainerConfigError(f"unsupported fieldPath: {path}")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known names replaced, ``$$`` escapes."""

    def sub(m: re.Match[str]) -> str:
        if m[0] == "$$":
            return "$"
        return env.get(m[1], m[0])

    return re.sub(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)", sub, value)


def _key_ref(ref: dict[str, Any], kind: str, ns: str, objects: Objects) -> str | None:
    label = {"secret": "Secret", "configMap": "ConfigMap"}[kind]
    obj = objects.get(ref["name"])
    if obj is None:
        if ref.get("optional"):
            return None
        raise ContainerConfigError(f'{kind.lower()} "{ref["name"]}" not found')
    if ref["key"] not in obj:
        if ref.get("optional"):
            return None
        raise ContainerConfigError(f"couldn't find key {ref['key']} in {label} {ns}/{ref['name']}")
    return obj[ref["key"]].decode()


def container_env(
    pod: Pod, container: dict[str, Any], image: Image, secrets: Objects, configmaps: Objects
) -> dict[str, str]:
    """The process environment: image env, then envFrom, then env (later wins)."""
    ns = pod["metadata"]["namespace"]
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": pod["metadata"]["name"]}
    env.update(image.env)
    for src in container.get("envFrom") or []:
        env.update(_env_from(src, ns, secrets, configmaps))
    for e in container.get("env") or []:
        value = _env_value(pod, e, ns, secrets, configmaps, env)
        if value is not None:
            env[e["name"]] = value
    return env


def _env_from(
    src: dict[str, Any], ns: str, secrets: Objects, configmaps: Objects
) -> dict[str, str]:
    kind = "secret" if src.get("secretRef") else "configMap"
    ref = src[f"{kind}Ref"]
    obj = (secrets if kind == "secret" else configmaps).get(ref["name"])
    if obj is None:
        if ref.get("optional"):
            return {}
        raise ContainerConfigError(f'{kind.lower()} "{ref["name"]}" not found')
    prefix = src.get("prefix", "")
    # Keys that are not valid variable names are skipped, as kubelet does.
    return {prefix + k: v.decode() for k, v in obj.items() if ENV_NAME.match(prefix + k)}


def _env_value(
    pod: Pod,
    e: dict[str, Any],
    ns: str,
    secrets: Objects,
    configmaps: Objects,
    env: dict[str, str],
) -> str | None:
    if "valueFrom" not in e or e["valueFrom"] is None:
        return expand(e.get("value") or "", env)
    vf = e["valueFrom"]
    if vf.get("secretKeyRef"):
        return _key_ref(vf["secretKeyRef"], "secret", ns, secrets)
    if vf.get("configMapKeyRef"):
        return _key_ref(vf["configMapKeyRef"], "configMap", ns, configmaps)
    if vf.get("fieldRef"):
        return field_value(pod, vf["fieldRef"]["fieldPath"])
    raise ContainerConfigError(f"unsupported valueFrom in env {e['name']}: {sorted(vf)}")


def container_argv(container: dict[str, Any], image: Image, env: dict[str, str]) -> list[str]:
    """command+args with ``$(VAR)`` expanded; the image entrypoint when no command."""
    command = list(container.get("command") or image.entrypoint)
    argv = [expand(a, env) for a in command + list(container.get("args") or [])]
    if not argv:
        raise ContainerConfigError("no command specified")
    return argv


# --- volumes ------------------------------------------------------------------

Files = dict[str, tuple[bytes, int]]  # relative path -> (content, mode)


def volume_files(
    volume: dict[str, Any], pod: Pod, secrets: Objects, configmaps: Objects, token: str = ""
) -> Files | None:
    """Files of a secret/configMap/projected/downwardAPI volume; None for emptyDir."""
    if "emptyDir" in volume:
        return None
    name = volume["name"]
    try:
        if volume.get("secret"):
            v = volume["secret"]
            return _items(v, secrets.get(v["secretName"]), "secret", v["secretName"])
        if volume.get("configMap"):
            v = volume["configMap"]
            return _items(v, configmaps.get(v["name"]), "configmap", v["name"])
        if volume.get("projected"):
            return _projected(volume["projected"], pod, secrets, configmaps, token)
        if volume.get("downwardAPI"):
            return _downward(volume["downwardAPI"], pod)
    except MountError as e:
        raise MountError(f'MountVolume.SetUp failed for volume "{name}" : {e}') from None
    raise MountError(f'volume "{name}": unsupported volume type {sorted(volume)}')


def _items(src: dict[str, Any], obj: dict[str, bytes] | None, kind: str, name: str) -> Files:
    mode = src.get("defaultMode", 0o644)
    if obj is None:
        if src.get("optional"):
            return {}
        raise MountError(f'{kind} "{name}" not found')
    if not src.get("items"):
        return {k: (v, mode) for k, v in obj.items()}
    files: Files = {}
    for item in src["items"]:
        if item["key"] not in obj:
            if src.get("optional"):
                continue
            raise MountError(f"{kind} references non-existent key: {item['key']}")
        files[item["path"]] = (obj[item["key"]], item.get("mode", mode))
    return files


def _projected(
    src: dict[str, Any], pod: Pod, secrets: Objects, configmaps: Objects, token: str
) -> Files:
    mode = src.get("defaultMode", 0o644)
    files: Files = {}
    for s in src.get("sources") or []:
        if s.get("serviceAccountToken"):
            files[s["serviceAccountToken"]["path"]] = (token.encode(), mode)
        elif s.get("secret"):
            v = {"defaultMode": mode, **s["secret"]}
            files.update(_items(v, secrets.get(v["name"]), "secret", v["name"]))
        elif s.get("configMap"):
            v = {"defaultMode": mode, **s["configMap"]}
            files.update(_items(v, configmaps.get(v["name"]), "configmap", v["name"]))
        elif s.get("downwardAPI"):
            files.update(_downward({"defaultMode": mode, **s["downwardAPI"]}, pod))
    return files


def _downward(src: dict[str, Any], pod: Pod) -> Files:
    mode = src.get("defaultMode", 0o644)
    files: Files = {}
    for item in src.get("items") or []:
        if item.get("fieldRef"):
            value = field_value(pod, item["fieldRef"]["fieldPath"])
            files[item["path"]] = (value.encode(), item.get("mode", mode))
    return files


def needs_token(pod: Pod) -> bool:
    for v in pod["spec"].get("volumes") or []:
        for s in (v.get("projected") or {}).get("sources") or []:
            if s.get("serviceAccountToken"):
                return True
    return False


# --- launching ----------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    host: str
    path: str
    read_only: bool = False


def mounts(
    container: dict[str, Any], image: Image, volume_dirs: dict[str, str], term_file: str
) -> list[Mount]:
    """Image mounts, then volume mounts, then the termination-log file; parents first."""
    out = [Mount(h, p) for p, h in image.mounts.items()]
    for vm in container.get("volumeMounts") or []:
        if vm["name"] not in volume_dirs:
            raise ContainerConfigError(f'cannot find volume "{vm["name"]}" to mount')
        host = volume_dirs[vm["name"]]
        if vm.get("subPath"):
            host = f"{host}/{vm['subPath']}"
        out.append(Mount(host, vm["mountPath"], bool(vm.get("readOnly"))))
    path = container.get("terminationMessagePath") or "/dev/termination-log"
    out.append(Mount(term_file, path))
    return sorted(out, key=lambda m: m.path.rstrip("/").count("/"))


def run_as(pod: Pod, container: dict[str, Any], image: Image) -> tuple[int, int]:
    """(uid, gid) from the security contexts (container wins), else the image user."""
    pod_sc = pod["spec"].get("securityContext") or {}
    sc = container.get("securityContext") or {}
    uid = sc.get("runAsUser", pod_sc.get("runAsUser", image.user or 0))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup", uid))
    if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) and uid == 0:
        raise ContainerConfigError("container has runAsNonRoot and image will run as root")
    return uid, gid


def launch_argv(
    argv: list[str],
    mount_list: list[Mount],
    working_dir: str,
    uid: int,
    gid: int,
    file_mounts: set[str],
) -> list[str]:
    """``unshare`` + a shell prelude that bind-mounts, cds and execs the command.

    ``file_mounts`` are host paths that are files (their target is touched, not
    mkdir'ed). The process keeps the pid of ``unshare`` (every step execs).
    """
    q = shlex.quote
    lines = ["set -e"]
    for m in mount_list:
        if m.host in file_mounts:
            lines.append(f"mkdir -p {q(_parent(m.path))}; [ -e {q(m.path)} ] || : > {q(m.path)}")
        else:
            lines.append(f"mkdir -p {q(m.path)}")
        lines.append(f"mount --bind {q(m.host)} {q(m.path)}")
        if m.read_only:
            lines.append(f"mount -o remount,bind,ro {q(m.path)}")
    lines.append(f"cd {q(working_dir)}")
    drop = ""
    if uid != 0 or gid != 0:
        # CAP_DAC_READ_SEARCH only lets the uid read the host's "image" files, such as
        # the venv's python under /root (0700); writes still follow the uid.
        caps = "--inh-caps=+dac_read_search --ambient-caps=+dac_read_search"
        drop = f"setpriv --reuid={uid} --regid={gid} --clear-groups {caps} --pdeathsig=KILL -- "
    lines.append(f'exec {drop}"$@"')
    prelude = "\n".join(lines)
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        prelude,
        "sh",
    ] + argv


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


# --- statuses -----------------------------------------------------------------


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    state: dict[str, Any] = {"reason": reason}
    if message:
        state["message"] = message
    return {"waiting": state}


def running(started_at: str) -> dict[str, Any]:
    return {"running": {"startedAt": started_at}}


def terminated(
    exit_code: int, started_at: str, finished_at: str, message: str = "", reason: str = ""
) -> dict[str, Any]:
    state: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": reason or ("Completed" if exit_code == 0 else "Error"),
        "startedAt": started_at,
        "finishedAt": finished_at,
    }
    if message:
        state["message"] = message
    return {"terminated": state}


def termination_message(container: dict[str, Any], file_text: str, log_text: str, code: int) -> str:
    """What kubelet reports: the file, or the log tail under FallbackToLogsOnError."""
    msg = file_text[-TERMINATION_MESSAGE_LIMIT:]
    policy = container.get("terminationMessagePolicy") or "File"
    if not msg and code != 0 and policy == "FallbackToLogsOnError":
        tail = "\n".join(log_text.splitlines()[-FALLBACK_LOG_LINES:])
        msg = tail[-2048:]
    return msg


def should_restart(policy: str, exit_code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def pod_phase(policy: str, states: list[dict[str, Any]]) -> str:
    """Pod phase from the initialized pod's main-container states (kubelet's rules)."""
    if any("running" in s or _restarting(s) for s in states):
        return "Running"
    if any("waiting" in s for s in states):
        return "Pending"  # not started yet (creating, config error)
    if all(s["terminated"]["exitCode"] == 0 for s in states):
        return "Succeeded"
    return "Failed" if policy == "Never" else "Running"  # a failed one restarts


def _restarting(state: dict[str, Any]) -> bool:
    return "waiting" in state and state["waiting"].get("reason") == "CrashLoopBackOff"


def condition(kind: str, ok: bool, reason: str = "", message: str = "") -> dict[str, Any]:
    c: dict[str, Any] = {"type": kind, "status": "True" if ok else "False"}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c
