"""Starting or joining Ray, and the checks that must pass before any trial is queued.

- ``connect(address)``: ``None`` starts a private local Ray (dashboard off, nothing
  bound beyond localhost, quiet workers); an address joins an existing cluster.
  Returns whether this process started Ray (then it must shut it down).
- ``check_resources(cpu, gpu)``: a trial that asks for more CPUs or GPUs than any
  node has would wait forever in Ray's queue; refuse it at once instead. When
  trials take GPUs, one GPU worker is probed: a torch that cannot use the GPU
  there (a CPU-only build, the default of a plain ``pip install torch`` on some
  platforms) would make every trial an ``error`` row, so it is refused too.
- ``trial_slots(cpu, gpu)``: how many such trials the cluster runs at once.
- ``check_shared_path(path, shared)``: on a cluster of more than one node, trials on
  other nodes write their results into the results directory, so it must be shared
  storage. A path on a network file system (NFS, CIFS, Lustre, GPFS, CephFS, a FUSE
  mount ...) passes; any other path needs the explicit opt-in ``shared=True``
  (CLI ``--shared-storage``), by which the user asserts every node sees it.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from robustness.errors import UserInputError

# how long the GPU check waits for a GPU worker (its start imports torch: seconds)
PROBE_SECONDS = 120.0
# Ray and Tune settings that keep per-trial overhead small and output quiet; set
# only if the user has not chosen otherwise.
_RAY_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "TUNE_RESULT_BUFFER_LENGTH": "1",
    "RAY_DEDUP_LOGS": "0",
    "RAY_TRAIN_V2_ENABLED": "0",
    # Ctrl-C raises KeyboardInterrupt at once instead of Tune's graceful stop, which
    # would end running trials without results; resume re-runs them (see _searcher).
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
}
_NETWORK_FS = {
    "nfs",
    "nfs4",
    "cifs",
    "smbfs",
    "smb3",
    "lustre",
    "gpfs",
    "ceph",
    "fuse.cephfs",
    "glusterfs",
    "fuse.glusterfs",
    "beegfs",
    "fuse.sshfs",
    "fuse.juicefs",
    "fuse.s3fs",
    "fuse.gcsfuse",
    "fuse.mount-s3",
    "9p",
    "virtiofs",
}


def quiet_ray_environment() -> None:
    """Apply the lean Ray/Tune settings (environment variables read at run time)."""
    for key, value in _RAY_ENV.items():
        os.environ.setdefault(key, value)


def connect(
    address: str | None, *, num_cpus: int | None = None, num_gpus: float | None = None
) -> bool:
    """Start a local Ray (``address=None``) or join the cluster at ``address``.

    Returns True when this call started Ray (the caller shuts it down at the end).
    An already-initialized Ray in this process is reused and not owned.
    ``num_cpus``/``num_gpus`` override what a local Ray detects (tests use them to
    be independent of the machine).
    """
    import ray

    quiet_ray_environment()
    if ray.is_initialized():
        return False
    common = {"log_to_driver": False, "logging_level": logging.WARNING, "configure_logging": True}
    if address is None:
        ray.init(
            address="local",
            include_dashboard=False,
            dashboard_host="127.0.0.1",
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            **common,
        )
    else:
        try:
            ray.init(address=address, **common, **_loopback_node_ip(address))
        except ConnectionError as exc:
            raise UserInputError(
                f"cannot connect to a Ray cluster at --address {address!r}: {exc}; "
                "start one with `ray start --head` or give the address it printed"
            ) from exc
    return True


def _loopback_node_ip(address: str) -> dict[str, str]:
    """Keep a driver that joins a loopback cluster on loopback.

    Ray rewrites ``127.0.0.1``/``localhost`` to the host's outward-facing address,
    so a cluster of nodes on one machine is best started on another loopback
    address (``ray start --node-ip-address=127.0.0.2``); the driver then has to
    say it lives there too, or Ray finds no raylet for it.
    """
    host = address.rsplit(":", 1)[0].strip("[]")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        return {}
    return {"_node_ip_address": host} if loopback else {}


def check_resources(
    cpu: float, gpu: float, *, probe: Callable[[float], CudaProbe] | None = None
) -> None:
    """Refuse a per-trial request that no node of the running cluster can satisfy,
    and, when trials take GPUs, a GPU node whose torch cannot use them.

    ``probe(gpu)`` reports what torch sees in one worker that holds ``gpu`` GPUs
    (default: ``probe_gpu_worker``, a Ray task; tests inject their own).
    """
    largest = _largest_node()
    if gpu > 0 and largest["GPU"] < gpu:
        has = "no GPUs" if largest["GPU"] == 0 else f"at most {largest['GPU']:g} GPU(s) a node"
        raise UserInputError(
            f"resources.gpu = {gpu} per trial, but the Ray cluster has {has}; "
            "set resources.gpu to 0 (CPU) or run on a cluster with GPUs"
        )
    if cpu > largest["CPU"]:
        raise UserInputError(
            f"resources.cpu = {cpu} per trial, but the largest node of the Ray cluster "
            f"has {largest['CPU']:g} CPU(s); allowed: a value up to {largest['CPU']:g}"
        )
    if gpu > 0:
        found = (probe or probe_gpu_worker)(gpu)
        if found is not None and not found.available:
            raise UserInputError(
                f"resources.gpu = {gpu} per trial, and Ray gives the trials GPUs, but torch "
                f"in a GPU worker cannot use them: {found.problem()}"
            )


class CudaProbe(NamedTuple):
    """What torch sees in one worker: ``torch.cuda.is_available()`` and why not."""

    available: bool
    torch_version: str
    cuda_version: str | None
    devices: int

    def problem(self) -> str:
        from robustness.runner.device import cuda_problem

        return cuda_problem(self.torch_version, self.cuda_version, self.devices)


def probe_gpu_worker(gpu: float, timeout: float = PROBE_SECONDS) -> CudaProbe | None:
    """Run one Ray task that holds ``gpu`` GPUs (on a node Ray says has them) and
    report what torch sees there. None when no GPU frees up within ``timeout``
    seconds (a busy shared cluster): the trials are then not held back."""
    import ray

    task = ray.remote(num_cpus=0, num_gpus=gpu, max_retries=0)(_cuda_in_this_process)
    ref = task.remote()
    try:
        return ray.get(ref, timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        ray.cancel(ref, force=True)
        logging.getLogger(__name__).warning(
            "no GPU worker started within %g s to check that torch can use the GPUs; "
            "the study goes on unchecked",
            timeout,
        )
        return None


def _cuda_in_this_process() -> CudaProbe:
    import torch

    available = torch.cuda.is_available()
    return CudaProbe(
        available,
        torch.__version__,
        torch.version.cuda,
        torch.cuda.device_count() if available else 0,
    )


def _largest_node() -> dict[str, float]:
    """The most CPUs and GPUs any alive node of the connected cluster has."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return {
        key: max((float(n.get("Resources", {}).get(key, 0.0)) for n in nodes), default=0.0)
        for key in ("CPU", "GPU")
    }


def trial_slots(cpu: float, gpu: float) -> int:
    """How many trials of ``cpu`` CPUs and ``gpu`` GPUs the cluster runs at once,
    summed over its alive nodes (at least 1)."""
    import ray

    slots = 0
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        have = node.get("Resources", {})
        fits = int(float(have.get("CPU", 0.0)) // cpu + 1e-9)
        if gpu > 0:
            fits = min(fits, int(float(have.get("GPU", 0.0)) / gpu + 1e-9))
        slots += fits
    return max(1, slots)


def cluster_size() -> int:
    """Number of alive nodes in the connected Ray cluster."""
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive"))


def check_shared_path(path: Path, *, shared: bool) -> None:
    """On a multi-node cluster, refuse a results path other nodes may not reach."""
    if shared or cluster_size() <= 1:
        return
    fs_type = _filesystem_type(path)
    if fs_type in _NETWORK_FS:
        return
    raise UserInputError(
        f"the results directory {str(path)!r} is on a local file system ({fs_type or 'unknown'}) "
        "but the Ray cluster has more than one node, whose trials write there too; "
        "use a path on shared storage (NFS, Lustre, GPFS, CephFS ...) or, if every node "
        "sees this path, say so with --shared-storage"
    )


def _filesystem_type(path: Path) -> str | None:
    """The type of the file system holding ``path``, from /proc/mounts (Linux)."""
    target = path.resolve()
    while not target.exists():
        target = target.parent
    best, best_type = "", None
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                mount_point = fields[1].replace("\\040", " ")
                inside = str(target) == mount_point or str(target).startswith(
                    mount_point.rstrip("/") + "/"
                )
                if inside and len(mount_point) > len(best):
                    best, best_type = mount_point, fields[2]
    except OSError:
        return None
    return best_type
