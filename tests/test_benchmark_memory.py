"""The benchmarks' CPU memory measurement (benchmarks/cpu_memory.py)."""
import os
import os.path as osp
import sys
import textwrap

import pytest

BENCH = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                 'benchmarks')
sys.path.insert(0, BENCH)
import cpu_memory  # noqa: E402

pytestmark = pytest.mark.skipif(
    not os.access('/proc/self/clear_refs', os.W_OK),
    reason='needs Linux /proc/self/clear_refs')


def test_child_measures_a_known_allocation(tmp_path):
    script = tmp_path / 'alloc.py'
    script.write_text(
        textwrap.dedent(f'''
        import sys
        sys.path.insert(0, {BENCH!r})
        import torch
        from cpu_memory import (check_child, peak_mib,
                                write_child_result)
        check_child()
        peak_mib(lambda: torch.ones(2**22).sum())  # threads, first-call set-up
        result = dict(
            mib64=peak_mib(lambda: torch.ones(16 * 2**20).sum())[1],
            mib128=peak_mib(lambda: torch.ones(32 * 2**20).sum())[1],
            small=peak_mib(lambda: torch.ones(2**10).sum())[1])
        write_child_result(sys.argv[-1], result)
        '''))
    result = cpu_memory.run_child(str(script), [])
    # floats freed at once: the resident set follows the live tensor
    assert 60 < result['mib64'] < 72
    assert 124 < result['mib128'] < 136
    assert result['small'] < 4


def test_memory_process_requires_the_fixed_threshold(monkeypatch):
    monkeypatch.delenv('MALLOC_MMAP_THRESHOLD_', raising=False)
    with pytest.raises(RuntimeError, match='MALLOC_MMAP_THRESHOLD_'):
        cpu_memory.check_child()
