"""Which sockets this process and its descendants (a local Ray cluster, its workers) listen on,
read from /proc: a test's witness that nothing of a run is reachable from the network."""

from __future__ import annotations

import ipaddress
import os
import threading
from contextlib import contextmanager
from pathlib import Path

LISTEN = "0A"


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw[::-1])
    # /proc/net/tcp6 prints four little-endian 32-bit words
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    address = ipaddress.IPv6Address(words)
    return address.ipv4_mapped or address


def listening_sockets() -> dict[str, tuple[str, int]]:
    """socket inode -> (address, port) of every listening TCP socket on the machine."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == LISTEN:
                hex_address, hex_port = fields[1].split(":")
                found[fields[9]] = (str(_address(hex_address)), int(hex_port, 16))
    return found


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended
            continue
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, frontier = set(), [root]
    while frontier:
        pid = frontier.pop()
        found.add(pid)
        frontier += children.get(pid, [])
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:  # the process ended, or a file descriptor closed while read
        pass
    return inodes


def our_listeners() -> set[tuple[int, str, int]]:
    """(pid, address, port) of every socket that this process or a descendant listens on."""
    sockets = listening_sockets()
    return {
        (pid, *sockets[inode])
        for pid in descendants(os.getpid())
        for inode in _socket_inodes(pid)
        if inode in sockets
    }


@contextmanager
def watched_listeners(every_s: float = 0.2):
    """Poll ``our_listeners`` while the block runs; yields the set it fills."""
    seen: set[tuple[int, str, int]] = set()
    done = threading.Event()

    def poll():
        while not done.is_set():
            seen.update(our_listeners())
            done.wait(every_s)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        yield seen
    finally:
        done.set()
        poller.join()


def reachable_from_network(listeners) -> list[tuple[int, str, int]]:
    return [entry for entry in listeners if not ipaddress.ip_address(entry[1]).is_loopback]
