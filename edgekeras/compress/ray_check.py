"""The Ray settings checked before anything runs: the optional extra installed, an address of a known form. No
TensorFlow, no other edgekeras module but `errors` (the recipe checks `ray=` with these; `cluster.py` uses them).

Example:
    ray = import_ray()          # MissingDependency naming `pip install "edgekeras[ray]"` when Ray is missing
    check_address("head:6379")
"""

from __future__ import annotations

from pathlib import Path

from ..errors import BadInput, MissingDependency

INSTALL = 'pip install "edgekeras[ray]"'


def import_ray():
    """The `ray` module, or MissingDependency naming the extra to install."""
    try:
        import ray
    except ModuleNotFoundError as e:
        if e.name != "ray":
            raise
        import sys

        raise MissingDependency(
            f"a sweep on Ray needs the package ray, which {sys.executable or 'python3'} does not have",
            package="ray", fix=f"{INSTALL} (on the driver and on every node of the cluster), or run the sweep "
                               "without ray=", cli_fix=f"{INSTALL} (on the driver and on every node of the "
                                                       "cluster), or run the sweep without --ray") from None
    return ray


def check_address(address) -> str:
    """`auto` (RAY_ADDRESS, else a cluster started on this machine, else a new local one), `local` (a new local
    cluster) or a cluster address: `ray://host:port` (Ray Client) or `host:port` (the head's GCS)."""
    fix = dict(fix="pass ray='auto', or the head's address, e.g. ray='ray://head:10001' or ray='head:6379'",
               cli_fix="pass --ray alone (same as --ray auto, and then after MODEL), or the head's address, e.g. "
                       "--ray ray://head:10001 or --ray head:6379")
    if not isinstance(address, str) or not address.strip():
        raise BadInput(f"ray must be a cluster address or 'auto', got {address!r}", **fix)
    address = address.strip()
    if address in ("auto", "local"):
        return address
    if Path(address).exists() or Path(address).suffix.lower() in (".h5", ".keras", ".npz", ".npy"):
        raise BadInput(f"{address!r} was taken as the Ray cluster's address, and it is a file", **fix)
    _host_port(address, fix)
    return address


def _host_port(address: str, fix: dict) -> tuple[str, int]:
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host:
        raise BadInput(f"{address!r} is not a Ray cluster address (auto, local, ray://host:port or host:port)",
                       **fix)
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A TCP connection to a `host:port` address within `timeout` seconds (Ray itself waits minutes, and then some,
    for an address nothing answers on)."""
    import socket

    try:
        host, port = _host_port(address, {})
    except BadInput:  # another form (RAY_ADDRESS may hold one): Ray judges it
        return
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise BadInput(f"nothing answers at {address} ({host} port {port}: {e.strerror or e})",
                       fix="start the cluster first (ray start --head, ray up, KubeRay) and check the head's address "
                           "and port (6379 for host:port, 10001 for ray://)") from None
