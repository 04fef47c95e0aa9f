"""Start QEMU's ``vhost-vsock-pci`` on a host without ``/dev/vhost-vsock``, to read its PCI layout.

QEMU 7.2 realizes ``vhost-vsock-pci`` only after it opens ``/dev/vhost-vsock``
and the kernel answers a few ioctls (``VHOST_SET_OWNER``, ``VHOST_GET_FEATURES``,
``VHOST_SET_VRING_CALL``, ``VHOST_VSOCK_SET_GUEST_CID``). Test machines have no
``vhost_vsock`` module, so :func:`build` compiles a small ``LD_PRELOAD`` library
that opens ``/dev/null`` in its place and answers every vhost ioctl on it with
success (``VHOST_GET_FEATURES`` with the feature set Linux's ``drivers/vhost/vsock.c``
offers). The guest never runs (``-S``): what QEMU reports is its own device
model (config space, BARs), which does not depend on the kernel's answers.
Nothing here is used to run a guest.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

__all__ = ["STUB_SOURCE", "build", "preloaded"]

STUB_SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>

static int fake_fd = -1;

int open64(const char *path, int flags, ...) {
    static int (*real_open)(const char *, int, ...);
    int mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, int);
        va_end(ap);
    }
    if (!real_open) real_open = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open64");
    if (path && strcmp(path, "/dev/vhost-vsock") == 0) {
        fake_fd = real_open("/dev/null", O_RDWR | O_CLOEXEC);
        return fake_fd;
    }
    return real_open(path, flags, mode);
}

int open(const char *path, int flags, ...) {
    int mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, int);
        va_end(ap);
    }
    return open64(path, flags, mode);
}

int ioctl(int fd, unsigned long request, ...) {
    static int (*real_ioctl)(int, unsigned long, ...);
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (!real_ioctl) real_ioctl = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
    if (fake_fd >= 0 && fd == fake_fd && ((request >> 8) & 0xff) == 0xAF) {
        if (request == _IOR(0xAF, 0x00, uint64_t))      /* VHOST_GET_FEATURES */
            *(uint64_t *)arg = (1ULL << 1) | (1ULL << 24) | (1ULL << 26) | (1ULL << 27)
                             | (1ULL << 28) | (1ULL << 29) | (1ULL << 32) | (1ULL << 33);
        else if (request == _IOR(0xAF, 0x26, uint64_t)) /* VHOST_GET_BACKEND_FEATURES */
            *(uint64_t *)arg = 0;
        return 0;
    }
    return real_ioctl(fd, request, arg);
}
"""
"""The preloaded library: ``/dev/vhost-vsock`` is ``/dev/null``, and every vhost ioctl (type 0xAF) on it succeeds."""


def build(directory: Path) -> Path | None:
    """Compile the stub into ``directory``; ``None`` when no C compiler is at hand."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return None
    source = directory / "vhost_stub.c"
    library = directory / "vhost_stub.so"
    source.write_text(STUB_SOURCE)
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"], check=True)
    return library


def preloaded(binary: str, library: Path) -> tuple[str, list[str]]:
    """The binary and leading arguments that run ``binary`` with ``library`` preloaded (through ``env``)."""
    env = shutil.which("env") or "/usr/bin/env"
    return env, [f"LD_PRELOAD={library}", binary]
