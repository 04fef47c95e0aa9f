"""Start QEMU devices that need a host character device the test machine lacks, to read their PCI layout.

QEMU 7.2 realizes ``vhost-vsock-pci`` and ``vhost-scsi-pci`` only after it
opens ``/dev/vhost-vsock`` or ``/dev/vhost-scsi`` and the kernel answers a few
vhost ioctls (``VHOST_SET_OWNER``, ``VHOST_GET_FEATURES``, ...), and
``virtio-input-host-pci`` only after it opens an evdev node and reads it with
``EVIOC*`` ioctls. Test machines have no ``vhost_vsock``/``vhost_scsi`` module and
no ``/dev/input``, so :func:`build` compiles a small ``LD_PRELOAD`` library that
opens an eventfd (never readable) in place of each path of :data:`FAKED` and
answers every ioctl of that path's type on it with success: zeroed output, or
the value :data:`FAKED` gives (``VHOST_GET_FEATURES``: the feature set the Linux
driver offers). The guest never runs (``-S``): what QEMU reports is its own
device model (config space, BARs), which does not depend on the kernel's answers.
Nothing here is used to run a guest.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

__all__ = ["EVDEV", "FAKED", "STUB_SOURCE", "build", "preloaded"]


def _ior(kind: int, number: int, size: int) -> int:
    """Linux's ``_IOR(kind, number, size)``: an ioctl request that reads ``size`` bytes."""
    return (2 << 30) | (size << 16) | (kind << 8) | number


VHOST = 0xAF
"""The ioctl type of ``/dev/vhost-*`` (``VHOST_VIRTIO``)."""
EVDEV_IOCTL = ord("E")
"""The ioctl type of an evdev node."""
VHOST_GET_FEATURES = _ior(VHOST, 0x00, 8)
EVIOCGVERSION = _ior(EVDEV_IOCTL, 0x01, 4)
# drivers/vhost/vhost.h VHOST_FEATURES: NOTIFY_ON_EMPTY, LOG_ALL, ANY_LAYOUT, INDIRECT_DESC, EVENT_IDX, VERSION_1
_VHOST_FEATURES = (1 << 24) | (1 << 26) | (1 << 27) | (1 << 28) | (1 << 29) | (1 << 32)
EVDEV = "/dev/input/event-pcitopo-stub"
"""The evdev path ``virtio-input-host-pci`` is given (no such node: the stub fakes it)."""
FAKED: dict[str, tuple[int, dict[int, int]]] = {
    # drivers/vhost/vsock.c: VHOST_FEATURES | VIRTIO_F_ACCESS_PLATFORM, and VIRTIO_VSOCK_F_SEQPACKET (1)
    "/dev/vhost-vsock": (VHOST, {VHOST_GET_FEATURES: _VHOST_FEATURES | (1 << 1) | (1 << 33)}),
    # drivers/vhost/scsi.c: VHOST_FEATURES | VIRTIO_SCSI_F_HOTPLUG (1) | VIRTIO_SCSI_F_T10_PI (3)
    "/dev/vhost-scsi": (VHOST, {VHOST_GET_FEATURES: _VHOST_FEATURES | (1 << 1) | (1 << 3)}),
    # an input device with no event types (EVIOCGBIT answers zeroes); evdev protocol version 1.0.1
    EVDEV: (EVDEV_IOCTL, {EVIOCGVERSION: 0x010001}),
}
"""Each faked path: the ioctl type answered on it, and the requests answered with a value (others: zeroes)."""


def _c_table() -> str:
    paths = ",\n".join(f'    {{"{path}", {kind:#x}}}' for path, (kind, _) in FAKED.items())
    answers = ",\n".join(
        f"    {{{i}, {request:#x}UL, {value:#x}ULL}}"
        for i, (_, table) in enumerate(FAKED.values())
        for request, value in table.items()
    )
    return (
        f"static const struct fake FAKED[] = {{\n{paths}\n}};\n"
        f"static const struct answer ANSWERS[] = {{\n{answers}\n}};\n"
    )


_STUB_TEMPLATE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>

struct fake { const char *path; unsigned type; };
struct answer { int fake; unsigned long request; uint64_t value; };
@TABLE@
#define NFAKED (sizeof(FAKED) / sizeof(FAKED[0]))
#define NANSWERS (sizeof(ANSWERS) / sizeof(ANSWERS[0]))
#define MAXFD 4096
static signed char faked_fd[MAXFD]; /* 1 + index into FAKED of the path opened as this fd, 0 if none */

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
    for (unsigned i = 0; path && i < NFAKED; i++) {
        if (strcmp(path, FAKED[i].path) == 0) {
            int fd = eventfd(0, EFD_CLOEXEC | ((flags & O_NONBLOCK) ? EFD_NONBLOCK : 0));
            if (fd >= 0 && fd < MAXFD) faked_fd[fd] = (signed char)(i + 1);
            return fd;
        }
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

int close(int fd) {
    static int (*real_close)(int);
    if (!real_close) real_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
    if (fd >= 0 && fd < MAXFD) faked_fd[fd] = 0;
    return real_close(fd);
}

int ioctl(int fd, unsigned long request, ...) {
    static int (*real_ioctl)(int, unsigned long, ...);
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (!real_ioctl) real_ioctl = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
    int which = (fd >= 0 && fd < MAXFD) ? faked_fd[fd] - 1 : -1;
    if (which >= 0 && _IOC_TYPE(request) == FAKED[which].type) {
        unsigned size = _IOC_SIZE(request);
        if ((_IOC_DIR(request) & _IOC_READ) && arg) memset(arg, 0, size);
        for (unsigned i = 0; i < NANSWERS; i++)
            if (ANSWERS[i].fake == which && ANSWERS[i].request == request)
                memcpy(arg, &ANSWERS[i].value, size < 8 ? size : 8);
        return 0;
    }
    return real_ioctl(fd, request, arg);
}
"""

STUB_SOURCE = _STUB_TEMPLATE.replace("@TABLE@", _c_table())
"""The preloaded library: each path of :data:`FAKED` opens as an eventfd, and every ioctl of its type on it succeeds."""


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
