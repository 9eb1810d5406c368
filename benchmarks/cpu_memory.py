"""Peak CPU memory of one call, measured in a process of its own.

The peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``;
Linux only) above the resident set before the call follows the live
tensors only if freed tensors go back to the system, which a fixed glibc
mmap threshold (``MALLOC_MMAP_THRESHOLD_``) ensures. The same setting
gives every tensor above the threshold fresh pages from the system, which
slows a model down (SegViT ViT-B inference 1.23x: backbone 1.10x, head
1.77x, measured with ``benchmarks.bench_models``), so the benchmarks time
their calls in a process with glibc's default allocator, as a user's is,
and measure memory in a child process started with :func:`run_child`.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time
from typing import Callable, Tuple

MMAP_THRESHOLD = str(128 * 1024)
CHILD_FLAG = '--memory-child'


def rss_mib(field: str) -> float:
    """A ``/proc/self/status`` field (``VmRSS``, ``VmHWM``) in MiB."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f'{field} not in /proc/self/status')


def check_child() -> None:
    """Raise unless this process runs with the fixed mmap threshold."""
    if os.environ.get('MALLOC_MMAP_THRESHOLD_') != MMAP_THRESHOLD:
        raise RuntimeError('CPU memory is measured in a process started '
                           f'with MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD}')


def parse_args(parser: argparse.ArgumentParser,
               argv=None) -> Tuple[argparse.Namespace, list]:
    """Parse argv (``sys.argv[1:]`` by default) with the hidden ``--memory-
    child PATH`` option added, checking the mmap threshold in a child; return
    the options and argv (what :func:`run_child` passes on)."""
    parser.add_argument(CHILD_FLAG, help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.memory_child:
        check_child()
    return args, argv


def peak_mib(fn: Callable[[], object]) -> Tuple[float, float]:
    """Seconds and peak resident MiB above the start of one call of fn."""
    base = rss_mib('VmRSS')
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset the peak resident set (VmHWM)
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    return seconds, rss_mib('VmHWM') - base


def run_child(module: str, argv: list) -> dict:
    """Run ``python -m module argv --memory-child PATH`` with the fixed
    threshold; return the JSON the child wrote to PATH.

    The child finds ``module`` where this process found this package (the
    folder holding ``benchmarks/`` goes first on its ``PYTHONPATH``) and in
    this process's working folder.
    """
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, 'memory.json')
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=MMAP_THRESHOLD)
        env['PYTHONPATH'] = os.pathsep.join(
            p for p in (root, os.environ.get('PYTHONPATH')) if p)
        subprocess.run([sys.executable, '-m', module, *argv, CHILD_FLAG, path],
                       env=env,
                       check=True)
        with open(path) as f:
            return json.load(f)


def write_child_result(path: str, result: dict) -> None:
    with open(path, 'w') as f:
        json.dump(result, f)
