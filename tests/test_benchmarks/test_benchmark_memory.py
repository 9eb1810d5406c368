"""The benchmarks' CPU memory measurement (benchmarks/cpu_memory.py)."""
import os
import subprocess
import sys
import textwrap

import pytest
from fixtures import REPO

from benchmarks import cpu_memory

pytestmark = pytest.mark.skipif(
    not os.access('/proc/self/clear_refs', os.W_OK),
    reason='needs Linux /proc/self/clear_refs')


def test_child_measures_a_known_allocation(tmp_path, monkeypatch):
    (tmp_path / 'alloc_child.py').write_text(
        textwrap.dedent('''
        import sys
        import torch
        from benchmarks.cpu_memory import (check_child, peak_mib,
                                           write_child_result)
        check_child()
        peak_mib(lambda: torch.ones(2**22).sum())  # threads, first-call set-up
        result = dict(
            mib64=peak_mib(lambda: torch.ones(16 * 2**20).sum())[1],
            mib128=peak_mib(lambda: torch.ones(32 * 2**20).sum())[1],
            small=peak_mib(lambda: torch.ones(2**10).sum())[1])
        write_child_result(sys.argv[-1], result)
        '''))
    # the child finds the benchmarks package without the caller's path
    monkeypatch.setenv('PYTHONPATH', str(tmp_path))
    monkeypatch.chdir(tmp_path)
    result = cpu_memory.run_child('alloc_child', [])
    # floats freed at once: the resident set follows the live tensor
    assert 60 < result['mib64'] < 72
    assert 124 < result['mib128'] < 136
    assert result['small'] < 4


def test_memory_process_requires_the_fixed_threshold(monkeypatch):
    monkeypatch.delenv('MALLOC_MMAP_THRESHOLD_', raising=False)
    with pytest.raises(RuntimeError, match='MALLOC_MMAP_THRESHOLD_'):
        cpu_memory.check_child()


@pytest.mark.slow
def test_quick_benchmark_writes_a_complete_table(tmp_path):
    """``python -m benchmarks.bench_models --quick`` end to end: every model
    row has its times from this process and its peaks from the memory child."""
    subprocess.run([
        sys.executable, '-m', 'benchmarks.bench_models', '--quick',
        '--out-dir',
        str(tmp_path)
    ],
                   cwd=REPO,
                   check=True,
                   capture_output=True)
    tables = list(tmp_path.glob('cpu-*_fp32_quick.md'))
    assert len(tables) == 1
    table = tables[0].read_text()
    rows = [
        line.strip('|').split('|') for line in table.splitlines()
        if line.startswith('| Seg')
    ]
    assert len(rows) == 3  # SegViT, SegViT fast order, Segmenter
    for cells in rows:
        cells = [c.strip() for c in cells]
        gmacs, latency, train = (float(cells[i]) for i in (3, 4, 6))
        infer_peak, train_peak = float(cells[7]), float(cells[8])
        head_share = float(cells[9].rstrip('%'))
        assert gmacs > 5 and latency > 0 and train > 0
        assert 0 <= infer_peak < train_peak  # training keeps activations
        assert 0 < head_share < 100
    assert 'Every kept round' in table
