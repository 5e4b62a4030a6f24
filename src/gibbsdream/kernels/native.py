"""What the compiled loops take from the machine and its libraries, checked when they are imported.

* **x86-64 and a 64-bit Python.** The workers meet by spinning on counters (see
  :mod:`.threads`) with no hardware fence: they rely on x86's total store order, under which
  stores become visible to other cores in program order and loads are not reordered with other
  loads. The BLAS is also called with its addresses passed as 64-bit integers (:data:`POINTER`),
  which the x86-64 calling conventions pass exactly like pointers. On another machine (ARM's
  weaker ordering, for one) the import raises ImportError and the trainer and sampler use their
  PyTorch engines.
* **PyTorch's MKL.** ``sgemm_`` and ``dgemm_`` are the Fortran BLAS that PyTorch's x86 builds
  link statically and export, with the LP64 interface PyTorch itself calls them through (32-bit
  integers, every argument by address); ``MKL_Set_Num_Threads_Local`` and
  ``MKL_Get_Max_Threads`` set and read the calling thread's BLAS thread count, so that each
  worker's product runs on that worker alone (the workers check it, :func:`.rbm.one_blas_thread`).
  A PyTorch built without MKL does not export them: ImportError, and the PyTorch engines.
* **Linux's futex** (through the C library's ``syscall``): a worker that has waited a while at a
  meeting sleeps in the kernel until the counter it waits on changes, and every worker wakes the
  sleepers of its counter when it moves it (:data:`SLEEPS`). Spinning alone, or yielding the core,
  stalled the workers on a busy machine: a meeting needs every worker running at once, and a worker
  that spends its turn waiting runs as long as the other processes, so the workers met only when
  the scheduler happened to run them together (measured on the 2-core VM with two busy processes:
  12.5 s for 1,000 sweeps that take 0.12 s on a quiet machine). A sleeper uses no time, so the
  kernel runs it first when woken. Elsewhere (macOS) a waiter yields its core instead.

Besides, :func:`relax` is x86's ``pause``, the spinning hint, written as an instruction that may
read and write any memory, so that the compiler keeps every load and store on its side of it.

The addresses are registered with LLVM under names of their own (``gibbsdream_*``), which the
compiled code in :mod:`.rbm` declares as external functions (:data:`SGEMM` ...); numba's cache
then holds only those names, and this module registers them again in every process.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct

import torch
from llvmlite import binding as _llvm
from llvmlite import ir
from numba import types
from numba.core.extending import intrinsic

X86_64 = ("x86_64", "amd64")  # platform.machine() on Linux and macOS, and on Windows


def check_machine() -> None:
    """Raise ImportError unless this is x86-64 with a 64-bit Python (see the module's notes)."""
    machine = platform.machine()
    if machine.lower() not in X86_64:
        raise ImportError(
            f"the compiled loops rely on x86-64's store order and calling convention, and this machine is {machine!r}"
        )
    if struct.calcsize("P") != 8:
        raise ImportError("the compiled loops need a 64-bit Python")


def _library_symbols() -> dict:
    """Addresses of the BLAS and libc functions the loops call, registered with LLVM by name."""
    folder = os.path.join(os.path.dirname(torch.__file__), "lib")
    paths = [os.path.join(folder, name) for name in ("libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll")]
    path = next((p for p in paths if os.path.exists(p)), None)
    if path is None:
        raise ImportError("PyTorch's CPU library was not found")
    try:
        torch_cpu, libc = ctypes.CDLL(path), ctypes.CDLL(None)  # CDLL(None): the C library (POSIX only)
    except (OSError, TypeError) as error:
        raise ImportError(f"the libraries the numba engine calls cannot be loaded here ({error})") from None
    wanted = {
        "sgemm": (torch_cpu, "sgemm_"),
        "dgemm": (torch_cpu, "dgemm_"),
        "set_blas_threads": (torch_cpu, "MKL_Set_Num_Threads_Local"),
        "blas_threads": (torch_cpu, "MKL_Get_Max_Threads"),
        "yield": (libc, "sched_yield"),
        "syscall": (libc, "syscall"),
    }
    addresses = {}
    for key, (library, name) in wanted.items():
        try:
            addresses[key] = ctypes.cast(getattr(library, name), ctypes.c_void_p).value
        except AttributeError:
            raise ImportError(
                f"{name} is not exported here (the numba engine needs a PyTorch built with MKL)"
            ) from None
    for key, address in addresses.items():
        _llvm.add_symbol(f"gibbsdream_{key}", address)
    return addresses


check_machine()
_llvm.initialize_native_asmparser()  # for relax()'s inline assembly (numba initialises only the printer)
ADDRESSES = _library_symbols()  # name -> address, for a check from Python (ctypes) where one is wanted

POINTER = types.intp  # an address passed as a 64-bit integer: the same register as a pointer on x86-64
SGEMM = types.ExternalFunction("gibbsdream_sgemm", types.void(*[POINTER] * 13))
DGEMM = types.ExternalFunction("gibbsdream_dgemm", types.void(*[POINTER] * 13))
# MKL_Set_Num_Threads_Local(n): the calling thread's BLAS threads from now on (0 = the global
# setting); returns the previous setting. MKL_Get_Max_Threads(): the threads a call would use.
SET_BLAS_THREADS = types.ExternalFunction("gibbsdream_set_blas_threads", types.int32(types.int32))
BLAS_THREADS = types.ExternalFunction("gibbsdream_blas_threads", types.int32())
YIELD = types.ExternalFunction("gibbsdream_yield", types.int32())
# syscall(number, a1, ..., a6): the C library's, declared with its six arguments fixed, which
# on x86-64 go in the same registers as the variadic call's (glibc's is assembly that reads no %al)
SYSCALL = types.ExternalFunction("gibbsdream_syscall", types.int64(types.int64, *[types.int64] * 6))


@intrinsic
def relax(typingctx):
    """x86's ``pause`` (a spinning thread's hint to the core), as an instruction that may read and
    write any memory: the compiler moves no load or store across it and reads a counter afresh."""

    def codegen(context, builder, signature, arguments):
        pause = ir.InlineAsm(ir.FunctionType(ir.VoidType(), []), "pause", "~{memory}", side_effect=True)
        builder.call(pause, [])
        return context.get_dummy_value()

    return types.void(), codegen
