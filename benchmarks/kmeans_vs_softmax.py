"""Softmax ATM vs k-means (kMaX) ATM on the demo data, same budget.

Trains the demo configs one after the other in this one run with
``mim train mmsegmentation`` (same backbone, data, seed, 500 iterations,
batch 8, validation at the end) and prints a table of mIoU, aAcc, mAcc,
the mean logged training time per iteration and the wall time of each
``mim train`` (training + validation, start-up included).

Variants:

- ``softmax``: the demo config (SegViT's ATM, cumulative masks, one
  supervised output per stage).
- ``kmeans``: the k-means demo config (argmax over queries; every decoder
  layer's mask supervised, ``mask_mode='per_layer'``).
- ``softmax-per-layer``: the softmax config with every layer supervised as
  in ``kmeans``, so that the effect of the cross-attention alone can be read
  from ``kmeans`` vs ``softmax-per-layer``.

Usage (from the repository root)::

    python -m benchmarks.kmeans_vs_softmax [--work-dir DIR] \
        [--variants softmax kmeans softmax-per-layer] [--cfg-options ...]

``--cfg-options`` goes to every run unchanged (e.g. ``randomness.seed=1``).

Wall times of whole trainings drift with the load of the machine, so the
script also times training steps of the same models in one process,
interleaved (variant after variant, ``--step-reps`` rounds, median), on a
random batch of 8 images of 128x128.
"""
import argparse
import glob
import json
import os
import os.path as osp
import shutil
import statistics
import subprocess
import sys
import time
from typing import Dict, List

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(REPO, 'configs', 'segvit')
SOFTMAX = osp.join(CONFIGS, 'segvit_vit-t8_1xb8-500iter_shapes-128x128.py')
KMEANS = osp.join(CONFIGS,
                  'segvit-kmeans_vit-t8_1xb8-500iter_shapes-128x128.py')
VARIANTS = {
    # name: (config, config overrides, description)
    'softmax': (SOFTMAX, {}, 'softmax over tokens, cumulative masks'),
    'kmeans': (KMEANS, {}, 'argmax over queries, every layer supervised'),
    'softmax-per-layer': (SOFTMAX, {
        'model.decode_head.mask_mode': 'per_layer'
    }, 'softmax over tokens, every layer supervised'),
}

__all__ = ['train', 'read_results', 'time_steps', 'main']


def _mim() -> List[str]:
    """The ``mim`` next to this interpreter, else the one on PATH."""
    local = osp.join(osp.dirname(sys.executable), 'mim')
    if osp.exists(local):
        return [local]
    found = shutil.which('mim')
    if found is None:
        raise FileNotFoundError('mim not found: pip install openmim')
    return [found]


def train(config: str, work_dir: str, cfg_options: List[str]) -> float:
    """Run ``mim train`` and return its wall time in seconds."""
    cmd = _mim() + ['train', 'mmsegmentation', config, '--work-dir', work_dir]
    if cfg_options:
        cmd += ['--cfg-options'] + cfg_options
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (REPO, env.get('PYTHONPATH')) if p)
    print('+', ' '.join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env, check=True)
    return time.perf_counter() - start


def read_results(work_dir: str) -> Dict[str, float]:
    """Final validation metrics and mean training s/iter of a work dir."""
    runs = sorted(
        glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not runs:
        raise FileNotFoundError(f'no scalars.json under {work_dir}')
    train_times, metrics = [], None
    with open(runs[-1]) as f:
        for line in f:
            record = json.loads(line)
            if 'mIoU' in record:
                metrics = record
            elif 'loss' in record:
                train_times.append(record['time'])
    if metrics is None:
        raise ValueError(f'{runs[-1]} has no validation result')
    # The first logged window includes warm-up; leave it out if we can.
    steady = train_times[1:] or train_times
    return dict(
        mIoU=metrics['mIoU'],
        aAcc=metrics['aAcc'],
        mAcc=metrics['mAcc'],
        iters=metrics['step'],
        s_per_iter=sum(steady) / max(len(steady), 1))


def time_steps(variants: List[str], reps: int) -> Dict[str, float]:
    """Median seconds of one training step per variant, interleaved."""
    import mmseg_segvit  # noqa: F401  (compat first, registers the models)
    # isort: split
    import torch
    from mmengine.config import Config
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=True)

    torch.manual_seed(0)
    imgs = torch.randn(8, 3, 128, 128)
    samples = []
    for label in torch.randint(0, 12, (8, 1, 128, 128)):
        sample = SegDataSample(gt_sem_seg=PixelData(data=label))
        sample.set_metainfo(dict(img_shape=(128, 128), pad_shape=(128, 128)))
        samples.append(sample)
    steps = {}
    for name in variants:
        config, options, _ = VARIANTS[name]
        cfg = Config.fromfile(config)
        cfg.merge_from_dict(options)
        model = MODELS.build(cfg.model).train()
        optim = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(model=model, optim=optim):
            loss, _ = model.parse_losses(model.loss(imgs, samples))
            optim.zero_grad()
            loss.backward()
            optim.step()

        step()  # warm-up
        steps[name] = step
    times = {name: [] for name in variants}
    for _ in range(reps):
        for name in variants:
            start = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--work-dir', default=osp.join(REPO, 'work_dirs', 'kmeans_vs_softmax'))
    parser.add_argument(
        '--variants',
        nargs='+',
        default=list(VARIANTS),
        choices=list(VARIANTS))
    parser.add_argument('--cfg-options', nargs='+', default=[])
    parser.add_argument('--step-reps', type=int, default=10)
    args = parser.parse_args()

    rows = []
    for name in args.variants:
        config, options, description = VARIANTS[name]
        work_dir = osp.join(args.work_dir, name)
        options = [f'{key}={value}' for key, value in options.items()]
        wall = train(config, work_dir, options + args.cfg_options)
        result = read_results(work_dir)
        result.update(variant=name, description=description, wall_s=wall)
        rows.append(result)
        print(json.dumps(result), flush=True)

    step = time_steps(args.variants, args.step_reps)
    for r in rows:
        r['step_s'] = step[r['variant']]
    lines = [
        '| variant | cross-attention, supervision | iters | mIoU | aAcc '
        '| mAcc | wall (train + val) | train s/iter (log) '
        '| step s (interleaved) |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['description']} | {r['iters']} "
                     f"| {r['mIoU']:.2f} | {r['aAcc']:.2f} | {r['mAcc']:.2f} "
                     f"| {r['wall_s'] / 60:.1f} min | {r['s_per_iter']:.3f} "
                     f"| {r['step_s']:.3f} |")
    table = '\n'.join(lines)
    print(table)
    os.makedirs(args.work_dir, exist_ok=True)
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(rows, f, indent=1)
    with open(osp.join(args.work_dir, 'results.md'), 'w') as f:
        f.write(table + '\n')


if __name__ == '__main__':
    main()
