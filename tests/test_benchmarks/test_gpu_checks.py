"""benchmarks/gpu_checks.sh, the prepared GPU run, dry-run on the CPU
(``DEVICE=cpu``: the same steps at toy sizes), so that the one device call
a GPU session gets does not fail on the script itself."""
import os
import os.path as osp
import subprocess
import sys

import pytest

from fixtures import REPO

SCRIPT = osp.join(REPO, 'benchmarks', 'gpu_checks.sh')


def test_gpu_checks_script_parses():
    subprocess.run(['bash', '-n', SCRIPT], check=True)


def test_gpu_checks_stops_without_cuda_unless_dry_run(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), STEPS='none',
               CUDA_VISIBLE_DEVICES='',
               PATH=osp.dirname(sys.executable) + os.pathsep +
               os.environ['PATH'])
    proc = subprocess.run(['bash', SCRIPT], env=env, capture_output=True,
                          text=True)
    assert proc.returncode != 0 and 'no CUDA' in proc.stderr
    proc = subprocess.run(['bash', SCRIPT], env=dict(env, DEVICE='cpu'),
                          capture_output=True, text=True)
    assert proc.returncode == 0 and 'done' in proc.stdout


@pytest.mark.slow
def test_gpu_checks_dry_run_writes_the_bf16_table(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), DEVICE='cpu', STEPS='bf16',
               MODELS='segvit-b', CUDA_VISIBLE_DEVICES='',
               PATH=osp.dirname(sys.executable) + os.pathsep +
               os.environ['PATH'])
    proc = subprocess.run(['bash', SCRIPT], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = [line for line in proc.stdout.splitlines()
           if line.startswith('| SegViT ViT-B/16 |')]
    assert len(row) == 1, proc.stdout
    cells = [c.strip() for c in row[0].strip('|').split('|')]
    assert cells[1] == '64'  # the dry run's crop
    assert int(cells[-1]) > int(cells[-2]) > 0  # kernel ops: step > inference
    assert list((tmp_path / 'results').glob('cpu-*_bf16.md'))
