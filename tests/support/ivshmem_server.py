"""A minimal ivshmem server, for starting QEMU's ``ivshmem-doorbell`` where ``ivshmem-server`` is not installed.

``ivshmem-doorbell`` realizes only once the server at its chardev has sent the
start of the protocol of QEMU's ``docs/specs/ivshmem-spec.txt``: the version
(0), the client's ID, then -1 with the shared memory's file descriptor; the
size of that memory is the size of the device's BAR2. Debian 12 ships no
``ivshmem-server`` (it is in neither ``qemu-utils`` nor ``qemu-system-common``),
so :class:`IvshmemServer` speaks that protocol on a Unix socket: one
``memfd`` of the given size (``ivshmem-server``'s default is 4 MiB), each client
its own ID and one eventfd per vector (step 5 of the protocol). It serves
clients until it is closed; nothing here runs a guest.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from pathlib import Path
from types import TracebackType

__all__ = ["IvshmemServer"]


class IvshmemServer:
    """An ivshmem server on ``path`` sharing ``size`` bytes, in a thread; a context manager."""

    def __init__(self, path: Path, size: int = 4 << 20, vectors: int = 1) -> None:
        self.path = path
        self.size = size
        self.vectors = vectors
        self._memory = os.memfd_create("pcitopo-ivshmem", os.MFD_CLOEXEC)
        os.ftruncate(self._memory, size)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen()
        self._clients: list[tuple[socket.socket, list[int]]] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        next_id = 0
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            events = [os.eventfd(0, os.EFD_CLOEXEC) for _ in range(self.vectors)]
            self._clients.append((client, events))
            client.sendall(struct.pack("<q", 0))  # 1. protocol version
            client.sendall(struct.pack("<q", next_id))  # 2. the client's ID
            socket.send_fds(client, [struct.pack("<q", -1)], [self._memory])  # 3. the shared memory
            for fd in events:  # 5. interrupt setup (4: no other clients are announced)
                socket.send_fds(client, [struct.pack("<q", next_id)], [fd])
            next_id += 1

    def close(self) -> None:
        """Stop serving and close every descriptor."""
        self._listener.close()
        self._thread.join(timeout=5)
        for client, events in self._clients:
            client.close()
            for fd in events:
                os.close(fd)
        os.close(self._memory)

    def __enter__(self) -> IvshmemServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
