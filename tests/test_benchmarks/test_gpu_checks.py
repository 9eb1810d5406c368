"""benchmarks/gpu_checks.sh, the prepared GPU run, dry-run on the CPU
(``DEVICE=cpu``: the same steps with tiny models and no time limits), so
that the one device call a GPU session gets does not fail on the script
itself; and the benchmark pieces it relies on."""
import os
import os.path as osp
import subprocess
import sys

import pytest
from fixtures import REPO

from benchmarks import bench_models, demo_miou

SCRIPT = osp.join(REPO, 'benchmarks', 'gpu_checks.sh')


def _env(tmp_path, **extra):
    env = dict(
        os.environ,
        OUT=str(tmp_path),
        CUDA_VISIBLE_DEVICES='',
        PATH=osp.dirname(sys.executable) + os.pathsep + os.environ['PATH'])
    env.update(extra)
    return env


def _rows(text, label):
    """The cells of the main tables' rows of ``label`` (not those of the ratio
    tables, which are shorter)."""
    rows = [[c.strip() for c in line.strip().strip('|').split('|')]
            for line in text.splitlines() if line.startswith(f'| {label} |')]
    return [cells for cells in rows if len(cells) > 10]


def test_gpu_checks_script_parses():
    subprocess.run(['bash', '-n', SCRIPT], check=True)


def test_gpu_checks_stops_without_cuda_unless_dry_run(tmp_path):
    env = _env(tmp_path, STEPS='none')
    proc = subprocess.run(['bash', SCRIPT],
                          env=env,
                          capture_output=True,
                          text=True)
    assert proc.returncode != 0 and 'no CUDA' in proc.stderr
    proc = subprocess.run(['bash', SCRIPT],
                          env=dict(env, DEVICE='cpu'),
                          capture_output=True,
                          text=True)
    assert proc.returncode == 0 and 'done' in proc.stdout


@pytest.mark.slow
def test_gpu_checks_dry_run_writes_the_tables(tmp_path):
    """The bf16 and fp32 steps at tiny sizes, with no time limit (a slow
    machine only takes longer): each table has its rows, the kernel-op columns
    are filled, and the official code's rows run where its mirror is at hand
    (SEGVIT_OFFICIAL) and are skipped by name otherwise."""
    models = 'segvit-b,segvit-b-casts,segvit-shrunk-l,off-b,off-shrunk-l'
    env = _env(
        tmp_path,
        DEVICE='cpu',
        STEPS='bf16,fp32',
        MODELS=models,
        FP32_MODELS='segvit-b,off-b')
    proc = subprocess.run(['bash', SCRIPT],
                          env=env,
                          capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    rows = _rows(out, 'SegViT ViT-B/16')
    assert len(rows) == 2, out  # bf16 and fp32
    bf16 = rows[0]
    assert bf16[1] == '64'  # the dry run's crop
    assert int(bf16[-1]) > int(bf16[-2]) > 0  # kernel ops: step > inference
    assert len(_rows(out, 'SegViT ViT-B/16, batched weight casts')) == 1
    assert list((tmp_path / 'results').glob('cpu-*_bf16.md'))
    assert list((tmp_path / 'results').glob('cpu-*_fp32.md'))
    if os.environ.get('SEGVIT_OFFICIAL'):
        official = _rows(out, 'SegViT ViT-B/16 (official code)')
        assert len(official) == 2 and float(official[0][5].split()[0]) > 0
        assert len(_rows(out, 'SegViT-Shrunk ViT-L/16 (official code)')) \
            == 1
        assert 'Against the official code, same run' in out
    else:
        assert 'skip off-b: the official code needs SEGVIT_OFFICIAL' in out


def test_ratio_table_compares_each_row_with_its_official_twin():

    def row(key, **results):
        r = bench_models.Row(key, bench_models.SPECS[key], None, 512)
        for name, value in results.items():
            r.add(name, value)
        return r

    rows = [
        row('off-b',
            throughput=100.0,
            latency=0.02,
            train=0.2,
            train_mem=1000.0),
        row('segvit-b',
            throughput=250.0,
            latency=0.01,
            train=0.1,
            train_mem=400.0),
        row('segmenter-b', latency=0.0125),
        row('segvit-l', throughput=5.0)
    ]  # no official twin in the run
    lines = bench_models.ratio_lines(rows)
    body = [line for line in lines if line.startswith('| SegViT')]
    assert len(body) == 1
    cells = [c.strip() for c in body[0].strip('|').split('|')]
    assert cells[2:] == ['2.50x', '2.00x', '2.00x', '40%', '0.80']
    assert bench_models.official_twin('segvit-b-casts') == 'off-b'
    assert bench_models.official_twin('segvit-shrunk-l') == 'off-shrunk-l'
    assert bench_models.official_twin('segmenter-b') is None


def test_demo_miou_compares_a_log_with_the_metafile(tmp_path):
    config = 'configs/segvit/segvit_vit-t8_1xb8-500iter_shapes-128x128.py'
    reference = demo_miou.recorded_miou(config)
    log = tmp_path / 'test.log'
    log.write_text(f'Iter(test) [10/10]  aAcc: 97.0000  '
                   f'mIoU: {reference - 0.5:.4f}  mAcc: 90.0000\n')
    assert demo_miou.main([config, str(log)]) == 0
    log.write_text(f'mIoU: {reference - 1.5:.4f}\n')
    assert demo_miou.main([config, str(log)]) == 1
    assert demo_miou.main([config, str(log), '--dry-run']) == 0
    log.write_text('no result\n')
    assert demo_miou.main([config, str(log)]) == 1
    with pytest.raises(KeyError, match='no mIoU'):
        demo_miou.recorded_miou('configs/segvit/not_a_config.py')
