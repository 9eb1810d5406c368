"""Memory of a SegViT training step on a timm backbone: trained, trained with
activation checkpointing, or frozen.

One training step of an ``EncoderDecoder`` with a :class:`TimmViT`
backbone and ATMHead (the loss, its backward and an AdamW step through
mmengine's ``OptimWrapper``), for each backbone setting:

* ``trained``: every weight trained;
* ``with_cp``: trained, blocks re-run in the backward pass
  (``with_cp=True``);
* ``frozen``: ``frozen=True``: no backbone gradient, no activations kept
  for its backward, no optimizer state for it.

The table gives the trainable parameters, the AdamW state after the step
(exp_avg and exp_avg_sq, counted from the optimizer), the peak memory of
the step above the memory before it (``torch.cuda.max_memory_allocated``
on CUDA; on CPU the peak resident set, measured in a child process with a
fixed mmap threshold, see ``cpu_memory.py``) and its time (median of
``--rounds`` after a warm-up step; the first step, which allocates the
optimizer state, is the one measured for memory).

Usage::

    python -m benchmarks.frozen_backbone_memory [--model NAME] [--crop 224]
        [--batch 2] [--device cpu|cuda] [--rounds 2]
"""
import argparse
import statistics
import time

import torch

from benchmarks.cpu_memory import (parse_args, peak_mib, run_child,
                                   write_child_result)

VARIANTS = ('trained', 'with_cp', 'frozen')


def build(model_name: str, crop: int, variant: str, classes: int,
          device: torch.device):
    """The segmentor and its optimizer wrapper."""
    import mmseg_segvit  # noqa: F401  (registers TimmViT, ATMHead)
    # isort: split
    from mmengine.config import ConfigDict
    from mmengine.optim import build_optim_wrapper
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    torch.manual_seed(0)
    backbone = dict(
        type='TimmViT',
        model_name=model_name,
        img_size=(crop, crop),
        drop_path_rate=0.1,
        with_cp=variant == 'with_cp',
        frozen=variant == 'frozen')
    probe = MODELS.build(dict(backbone, with_cp=False, frozen=False))
    depth = probe.num_blocks
    out = [depth // 3 - 1, 2 * depth // 3 - 1, depth - 1]
    cfg = dict(
        type='EncoderDecoder',
        data_preprocessor=dict(
            type='SegDataPreProcessor',
            size=(crop, crop),
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            pad_val=0,
            seg_pad_val=255),
        backbone=dict(backbone, out_indices=out),
        decode_head=dict(
            type='ATMHead',
            in_channels=probe.embed_dims,
            embed_dims=256,
            num_heads=8,
            num_layers=3,
            use_stages=3,
            num_classes=classes,
            loss_decode=dict(type='ATMLoss')),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))
    del probe
    model = MODELS.build(ConfigDict(cfg)).to(device)
    model.init_weights()
    model.train()
    wrapper = build_optim_wrapper(
        model,
        dict(
            type='OptimWrapper',
            optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.01)))
    return model, wrapper


def batch(crop: int, size: int, classes: int, device: torch.device):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    gen = torch.Generator().manual_seed(1)
    inputs = torch.randn(size, 3, crop, crop, generator=gen).to(device)
    samples = []
    for _ in range(size):
        sample = SegDataSample()
        label = torch.randint(0, classes, (1, crop, crop), generator=gen)
        sample.gt_sem_seg = PixelData(data=label.to(device))
        sample.set_metainfo(
            dict(
                img_shape=(crop, crop),
                pad_shape=(crop, crop),
                ori_shape=(crop, crop)))
        samples.append(sample)
    return inputs, samples


def train_step(model, wrapper, inputs, samples) -> None:
    loss, _ = model.parse_losses(model.loss(inputs, samples))
    wrapper.update_params(loss)


def state_mib(wrapper) -> float:
    return sum(t.numel() * t.element_size()
               for s in wrapper.optimizer.state.values()
               for t in s.values() if torch.is_tensor(t)) / 2**20


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def first_step_peak(model, wrapper, inputs, samples,
                    device: torch.device) -> float:
    """Peak extra MiB of the first step (it allocates the AdamW state)."""
    step = lambda: train_step(model, wrapper, inputs, samples)  # noqa: E731
    if device.type == 'cpu':
        return peak_mib(step)[1]
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    step()
    sync(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default='vit_small_patch14_dinov2')
    parser.add_argument('--crop', type=int, default=224)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--classes', type=int, default=150)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument(
        '--variants', nargs='+', default=list(VARIANTS), choices=VARIANTS)
    args, argv = parse_args(parser, argv)
    device = torch.device(args.device)
    child = args.memory_child
    rows = {}
    for variant in args.variants:
        model, wrapper = build(args.model, args.crop, variant, args.classes,
                               device)
        inputs, samples = batch(args.crop, args.batch, args.classes, device)
        measure = bool(child) or device.type == 'cuda'
        peak = first_step_peak(model, wrapper, inputs, samples, device) \
            if measure else None
        if not measure:
            train_step(model, wrapper, inputs, samples)  # warm-up
        times = []
        for _ in range(0 if child else args.rounds):
            sync(device)
            start = time.perf_counter()
            train_step(model, wrapper, inputs, samples)
            sync(device)
            times.append(time.perf_counter() - start)
        trainable = sum(p.numel() for p in model.parameters()
                        if p.requires_grad)
        rows[variant] = dict(
            trainable=trainable,
            state=state_mib(wrapper),
            peak=peak,
            seconds=statistics.median(times) if times else None)
        del model, wrapper
    if child:
        write_child_result(child, {v: r['peak'] for v, r in rows.items()})
        return
    if device.type == 'cpu':
        peaks = run_child('benchmarks.frozen_backbone_memory', argv)
        for variant, row in rows.items():
            row['peak'] = peaks[variant]
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' \
        else f'CPU, {torch.get_num_threads()} threads'
    print(f'{args.model} + ATMHead, {args.crop}x{args.crop}, batch '
          f'{args.batch}, AdamW, {name}, median of {args.rounds}')
    print('| backbone | trainable params (M) | AdamW state (MiB) | '
          'peak extra memory of the first step (MiB) | step (s) |')
    print('|---|---|---|---|---|')
    for variant, row in rows.items():
        print(f"| {variant} | {row['trainable'] / 1e6:.1f} | "
              f"{row['state']:.0f} | {row['peak']:.0f} | "
              f"{row['seconds']:.2f} |")


if __name__ == '__main__':
    main()
