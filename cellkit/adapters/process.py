"""Who this process is, for the forwarder's lease, and whether a holder on this host is still alive."""

from __future__ import annotations

import os
import socket
import uuid


def lease_holder_id(worker_id: str) -> str:
    """``host:pid:worker:nonce``: unique per process, and readable by a restart on the same host."""
    return f"{socket.gethostname()}:{os.getpid()}:{worker_id}:{uuid.uuid4().hex[:8]}"


def holder_dead(holder: str) -> bool:
    """True only for a holder of this host whose process is gone (a crash, SIGKILL). A holder elsewhere, or
    a pid now reused by another process, counts as alive: its lease is then waited out, never stolen."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False
