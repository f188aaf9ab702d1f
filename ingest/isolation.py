"""What the parse sandbox's child (ingest/sandbox.py) does to itself before it reads a byte
of the document: the parser may be exploited by the file it parses, so from then on it must
find nothing worth taking and no way to send anything anywhere.

Each layer is used where the kernel allows it, and :func:`isolate` says which took effect:

* ``netns``: a new, empty network namespace (``unshare(CLONE_NEWNET)``; as non-root inside a
  new user namespace): no interface but a loopback that is down, so no TCP or UDP peer, and
  no abstract Unix socket of the host;
* ``privileges``: run as root, the child becomes ``nobody`` (uid and gid 65534, no
  supplementary groups): it cannot read the data directory's ``master.key`` (mode 0600) nor
  write anything of docqa's;
* ``no_new_privs``: no set-uid program can give anything back;
* ``filesystem``: Landlock (Linux 5.13+) with no rule: no file or directory can be opened by
  path any more (the parser reads the document from the memory file it was given), and with
  a recent enough kernel no TCP connect or bind and no abstract Unix socket;
* ``sockets``: a seccomp filter that fails ``socket()`` and ``io_uring_setup()``, so no new
  socket of any family can be made, named Unix sockets included; it also fails ``setsid()``
  and ``setpgid()``, so whatever the parser forks stays in the child's process group, and
  killing that group (on timeout, and by the parse zygote when the child ends) ends it all.

The child gets a minimal environment (:func:`minimal_env`: no ``DOCQA_*`` secret, no database
URL) and no inherited file descriptor but its pipes. It needs its Python modules imported
before :func:`isolate` (nothing can be opened by path after it).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import struct

NOBODY = 65534
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
_SECCOMP_MODE_FILTER = 2
_SYS_LANDLOCK_CREATE_RULESET = 444  # the same number on x86_64 and aarch64
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
# (audit arch, socket, io_uring_setup, setsid, setpgid) per machine; x86_64's x32 calls
# (nr | 1 << 30) and any other arch's calls (i386 through int 0x80) are refused outright
_SECCOMP_ARCH = {"x86_64": (0xC000003E, 41, 425, 112, 109),
                 "aarch64": (0xC00000B7, 198, 425, 157, 154)}
_EACCES = 13
applied: dict[str, bool] = {}  # what :func:`isolate` achieved in this process


def minimal_env() -> dict[str, str]:
    """The child's whole environment: nothing of the worker's (keys, database URL, Redis)."""
    return {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1"}


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def prctl(option: int, value: int) -> None:
    """``prctl(option, value)`` where there is one (Linux); nothing elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        _libc().prctl(option, value, 0, 0, 0)


def enter_network_namespace() -> bool:
    """A new, empty network namespace; unprivileged: inside a new user namespace."""
    libc = _libc()
    if libc.unshare(_CLONE_NEWNET) == 0:
        return True
    if os.geteuid() == 0:
        return False
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
        return False
    try:  # map our own ids, so files keep their owner as this process sees them
        with open("/proc/self/setgroups", "w") as fh:
            fh.write("deny")
        with open("/proc/self/uid_map", "w") as fh:
            fh.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as fh:
            fh.write(f"{gid} {gid} 1")
    except OSError:
        pass  # unmapped ids still work: the network namespace is what was asked for
    return True


def drop_privileges() -> bool:
    """Root becomes nobody (groups first: setuid ends the right to change them)."""
    if os.geteuid() != 0:
        return False
    try:
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)
    except OSError:  # root without CAP_SETUID/CAP_SETGID (a container): the other layers hold
        return False
    return os.geteuid() == NOBODY


def no_new_privileges() -> bool:
    return bool(_libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0)


def restrict_filesystem() -> bool:
    """Landlock with every access right it knows handled and no rule granting any."""
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                       ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION))
    if abi < 1:
        return False
    fs = (1 << 13) - 1  # execute, read and write files, read dirs, make and remove anything
    fs |= (1 << 13) if abi >= 2 else 0  # refer (link or rename across directories)
    fs |= (1 << 14) if abi >= 3 else 0  # truncate
    fs |= (1 << 15) if abi >= 5 else 0  # ioctl on devices
    net = 0b11 if abi >= 4 else 0  # bind and connect TCP
    scoped = 0b11 if abi >= 6 else 0  # abstract Unix sockets and signals outside
    attr = struct.pack("QQQ", fs, net, scoped)
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    buf = ctypes.create_string_buffer(attr, len(attr))
    fd = libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, buf, ctypes.c_size_t(size),
                      ctypes.c_uint32(0))
    if fd < 0:
        return False
    try:
        return bool(libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(fd),
                                 ctypes.c_uint32(0)) == 0)
    finally:
        os.close(fd)


def deny_sockets() -> bool:
    """A seccomp filter: ``socket()``, ``io_uring_setup()``, ``setsid()`` and ``setpgid()``
    fail with EACCES, and so does every call of another ABI than this machine's own."""
    arch = _SECCOMP_ARCH.get(platform.machine())
    if arch is None:
        return False
    audit_arch, nr_socket, nr_io_uring, nr_setsid, nr_setpgid = arch
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, deny = 0x7FFF0000, 0x00050000 | _EACCES
    program = [  # (code, jump if true, jump if false, k); jumps count from the next one
        (ld, 0, 0, 4),  # seccomp_data.arch
        (jeq, 0, 7, audit_arch),
        (ld, 0, 0, 0),  # seccomp_data.nr
        (jge, 5, 0, 0x40000000),
        (jeq, 4, 0, nr_socket),
        (jeq, 3, 0, nr_io_uring),
        (jeq, 2, 0, nr_setsid),
        (jeq, 1, 0, nr_setpgid),
        (ret, 0, 0, allow),
        (ret, 0, 0, deny),
    ]
    filters = b"".join(struct.pack("HBBI", *ins) for ins in program)
    buf = ctypes.create_string_buffer(filters, len(filters))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = SockFprog(len(program), ctypes.cast(buf, ctypes.c_void_p))
    return bool(_libc().prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog),
                              0, 0) == 0)


def isolate() -> dict[str, bool]:
    """All layers, in the order they need (the namespace while still privileged, Landlock
    and seccomp once nothing more has to be opened); which of them took effect."""
    done = {"netns": enter_network_namespace(), "privileges": drop_privileges(),
            "no_new_privs": no_new_privileges()}
    done["filesystem"] = restrict_filesystem()
    done["sockets"] = deny_sockets() if done["no_new_privs"] else False
    applied.update(done)
    return done
