"""Training-step time of a config's model and of variants of it, measured in
one process, the variants taking turns step by step (so a change of load on a
shared machine falls on all of them alike).

Each variant is the config with ``--cfg-options``-style overrides; every one
trains on the same batches (those of the first variant's train dataloader;
later variants may not change ``train_dataloader``), forward, loss,
backward and optimizer step through its optimizer wrapper as ``mim train``
runs them, on the CPU, each model built after ``torch.manual_seed(0)``.
Prints a Markdown table: median and mean milliseconds per step and the ratio
of each variant's median to the first's.

Example (the Shrunk demo with and without the official dropout 0.1 in QU and
the head)::

    python -m benchmarks.train_step \\
        configs/segvit/segvit_vit-t8-shrunk_1xb8-1500iter_shapes-128x128.py \\
        --variant shipped \\
        --variant dropout-0.1 model.backbone.qu_cfg.dropout=0.1 \\
            model.decode_head.dropout=0.1
"""
import argparse
import statistics
import time
from typing import Dict, List, Sequence, Tuple

import torch

from .common import device_name

# A variant: its name and its overrides, ``key=value`` as --cfg-options.
Variant = Tuple[str, Dict[str, object]]


def parse_variants(args: Sequence[Sequence[str]]) -> List[Variant]:
    """``[[name, 'a.b=1', ...], ...]`` -> ``[(name, {'a.b': 1}), ...]``.

    Values are parsed as mmengine's ``DictAction`` parses ``--cfg-options``.

    Raises:
        ValueError: A variant without a name, an override without ``=``, or
            two variants of one name.
    """
    from mmengine.config import DictAction
    variants = []
    for words in args:
        if not words or '=' in words[0]:
            raise ValueError('--variant needs a name first, then key=value '
                             f'overrides; got {list(words)!r}')
        name, overrides = words[0], {}
        for word in words[1:]:
            if '=' not in word:
                raise ValueError(f'--variant {name}: {word!r} is not a '
                                 'key=value override')
            key, value = word.split('=', 1)
            overrides[key] = DictAction._parse_iterable(value)
        variants.append((name, overrides))
    names = [name for name, _ in variants]
    if len(set(names)) != len(names):
        raise ValueError(f'--variant names must differ, got {names}')
    return variants


def check_overrides(config: str, variants: Sequence[Variant]) -> None:
    """Refuse overrides that would time something else than asked.

    Raises:
        ValueError: A key whose parent is not in the config (a misspelt
            key would add a setting nothing reads), or a ``train_dataloader``
            override in a variant other than the first that the first does
            not have (all variants train on the first one's batches).
    """
    from mmengine.config import Config
    cfg = Config.fromfile(config).to_dict()
    for i, (name, overrides) in enumerate(variants):
        for key in overrides:
            node = cfg
            for part in key.split('.')[:-1]:
                if not isinstance(node, dict) or part not in node:
                    raise ValueError(
                        f'--variant {name}: {key} is not a setting of '
                        f'{config} ({part!r} is not there); check its '
                        'spelling against the config')
                node = node[part]
            first = variants[0][1]
            if i > 0 and key.split('.')[0] == 'train_dataloader' and (
                    key not in first or first[key] != overrides[key]):
                raise ValueError(
                    f'--variant {name}: {key} changes the data, but every '
                    'variant trains on the batches of the first variant; '
                    'put data overrides in the first --variant')


def build_trainer(config: str, overrides: Dict[str, object]):
    """The model (train mode) and optimizer wrapper of ``config`` with
    ``overrides``; the pretrained checkpoint of ``init_cfg`` is not loaded (the
    step's cost does not depend on the weights)."""
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    import mmseg_segvit  # noqa: F401  # isort: split
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(overrides)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).train()
    return model, build_optim_wrapper(model, cfg.optim_wrapper)


def train_batches(config: str, count: int, overrides: dict) -> list:
    """``count`` batches of the train dataloader of ``config`` with
    ``overrides`` (seed 0, no worker processes)."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(overrides)
    loader_cfg = dict(cfg.train_dataloader, num_workers=0)
    loader_cfg.pop('persistent_workers', None)
    loader = iter(Runner.build_dataloader(loader_cfg, seed=0))
    return [next(loader) for _ in range(count)]


def time_steps(config: str, variants: Sequence[Variant], steps: int,
               warmup: int) -> Dict[str, List[float]]:
    """Seconds of each of ``steps`` training steps per variant, after
    ``warmup`` untimed steps each; the variants take turns every step, on the
    batches of the first variant's train dataloader."""
    check_overrides(config, variants)
    trainers = {name: build_trainer(config, o) for name, o in variants}
    batches = train_batches(config, warmup + steps, variants[0][1])
    times = {name: [] for name, _ in variants}
    for i, batch in enumerate(batches):
        for name, (model, optim) in trainers.items():
            start = time.perf_counter()
            model.train_step(batch, optim)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def table(times: Dict[str, List[float]]) -> str:
    """Markdown table of :func:`time_steps`' result."""
    rows = [
        '| variant | median ms / step | mean ms / step | median vs first |',
        '| --- | --- | --- | --- |'
    ]
    first = None
    for name, values in times.items():
        median = statistics.median(values) * 1e3
        first = first or median
        rows.append(f'| {name} | {median:.1f} | '
                    f'{statistics.fmean(values) * 1e3:.1f} | '
                    f'{median / first:.2f}x |')
    return '\n'.join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument(
        '--variant',
        nargs='+',
        action='append',
        metavar='NAME [KEY=VALUE ...]',
        help='a variant: a name, then --cfg-options overrides (repeat the '
        'flag for more variants; default: the config alone)')
    parser.add_argument(
        '--steps',
        type=int,
        default=20,
        help='timed steps per variant (default: 20)')
    parser.add_argument(
        '--warmup',
        type=int,
        default=3,
        help='untimed steps per variant first (default: 3)')
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0:
        parser.error('--steps must be >= 1 and --warmup >= 0')
    try:
        variants = parse_variants(args.variant or [['config']])
        check_overrides(args.config, variants)
    except (ValueError, OSError) as error:
        parser.error(str(error))
    times = time_steps(args.config, variants, args.steps, args.warmup)
    print(f'Training step of {args.config}, {args.steps} steps per variant '
          f'after {args.warmup} warm-up steps, taking turns; '
          f'{device_name(torch.device("cpu"))}')
    print()
    print(table(times))


if __name__ == '__main__':
    main()
