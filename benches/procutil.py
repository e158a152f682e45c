"""What the bench and soak drivers read of processes and ports on Linux (/proc), shared by
benches/e2e/run.py and benches/soak/run.py."""

import os
import socket
import time
from pathlib import Path


def loadavg():
    """The 1, 5 and 15 minute load averages."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def free_port():
    """A TCP port free on 127.0.0.1 now (the kernel's choice for a bind to port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    """Whether something listens on the port (from /proc/net/tcp: a probe connection would
    pass through a proxy and count as a connection of the load)."""
    want = f":{port:04X}"
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            for line in Path(f).read_text().splitlines()[1:]:
                parts = line.split()
                if parts[1].endswith(want) and parts[3] == "0A":
                    return True
        except OSError:
            pass
    return False


def wait_listening(port, proc, timeout=10.0, poll=0.02):
    """Waits until `proc` listens on `port`; raises if it exits first or takes too long."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}) before listening on {port}")
        if listening(port):
            return
        time.sleep(poll)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def rss_kib(pid):
    """Resident memory of a process (VmRSS), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fd_count(pid):
    """Open file descriptors of a process."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_secs(pid):
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")
