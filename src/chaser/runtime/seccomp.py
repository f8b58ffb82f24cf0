"""A seccomp filter for sandboxes: refuse the kernel interfaces sandboxed code never needs.

Commands already run without capabilities and cannot make user namespaces, which closes
most of the kernel to them. This filter closes the rest of what container runtimes
refuse by default and exploits favour: keyrings, eBPF, perf events, userfaultfd,
io_uring, module and kexec loading, and a few administrative calls; and prlimit64 on
any process but the caller (commands share the agent's uid, and PID 1 with its open
files or memory limited could not kill trees or take requests). Refused calls fail
with EPERM, as under Docker's default profile; everything else is allowed (debuggers,
ptrace and process_vm_* included, since all of a sandbox's processes are the same user).

The program is classic BPF, built here so no library is needed; bubblewrap installs it
(`--seccomp FD`). Only x86_64 numbers are listed; elsewhere no filter is installed and
`describe()` says so.
"""

from __future__ import annotations

import platform
import struct

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_KILL_PROCESS = 0x80000000
EPERM = 1

BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JGE_K = 0x35
BPF_RET_K = 0x06
OFFSET_NR, OFFSET_ARCH, OFFSET_ARG0 = 0, 4, 16  # in struct seccomp_data
SOCKET_X86_64 = 41
# prlimit64(pid, ...) on another process: commands share the agent's uid, and lowering
# PID 1's limits (open files, address space) would leave it unable to kill trees or take
# requests. Setting one's own limits (pid 0, what setrlimit and `ulimit` use) stays.
PRLIMIT64_X86_64 = 302
# Socket families a network namespace does not isolate: VM sockets reach the hypervisor.
DENIED_FAMILIES = {"AF_VSOCK": 40}

DENIED_X86_64 = {
    "syslog": 103, "acct": 163, "swapon": 167, "swapoff": 168, "reboot": 169,
    "init_module": 175, "delete_module": 176, "lookup_dcookie": 212, "kexec_load": 246,
    "add_key": 248, "request_key": 249, "keyctl": 250, "perf_event_open": 298,
    "name_to_handle_at": 303, "open_by_handle_at": 304, "finit_module": 313,
    "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
}


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def filter_program() -> bytes | None:
    """The BPF program for this machine, or None where no syscall table is known."""
    if platform.machine() != "x86_64":
        return None
    denied = sorted(DENIED_X86_64.values())
    families = sorted(DENIED_FAMILIES.values())
    # Layout: arch check, load nr, x32 check, socket() family checks, the prlimit64()
    # check, one check per denied call, ALLOW, EPERM. Jumps count the instructions they
    # skip.
    prog = [
        _insn(BPF_LD_W_ABS, 0, 0, OFFSET_ARCH),
        _insn(BPF_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),  # foreign ABI (i386): kill
        _insn(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        _insn(BPF_LD_W_ABS, 0, 0, OFFSET_NR),
    ]
    prlimit_block = 5
    # what follows the x32 check up to EPERM
    tail = len(families) + 3 + prlimit_block + len(denied) + 1
    # x32 calls reach the same kernel code under other numbers: refuse them all.
    prog.append(_insn(BPF_JGE_K, tail, 0, X32_SYSCALL_BIT))
    # socket(family, ...): refuse the families listed; any other socket() is allowed.
    prog.append(_insn(BPF_JEQ_K, 0, len(families) + 2, SOCKET_X86_64))
    prog.append(_insn(BPF_LD_W_ABS, 0, 0, OFFSET_ARG0))
    for i, family in enumerate(families):
        prog.append(_insn(BPF_JEQ_K, len(families) - i + prlimit_block + len(denied) + 1, 0,
                          family))
    prog.append(_insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    # prlimit64(pid, ...): pid 0 (oneself) is allowed, any other pid refused (EPERM).
    prog.append(_insn(BPF_JEQ_K, 0, prlimit_block - 1, PRLIMIT64_X86_64))
    prog.append(_insn(BPF_LD_W_ABS, 0, 0, OFFSET_ARG0))
    prog.append(_insn(BPF_JEQ_K, 0, 1, 0))
    prog.append(_insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    prog.append(_insn(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM))
    for i, nr in enumerate(denied):
        # on a match jump to the EPERM return, past the remaining checks and the ALLOW
        prog.append(_insn(BPF_JEQ_K, len(denied) - i, 0, nr))
    prog.append(_insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    prog.append(_insn(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM))
    return b"".join(prog)
