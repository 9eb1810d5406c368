"""PyTorch vs onnxruntime (CPU) latency of one exported SegViT.

Exports CONFIG (default: the demo, random weights unless a checkpoint is
given) with :func:`mmseg_segvit.deploy.export_onnx` to a temporary file
and times one (1, 3, H, W) batch through the PyTorch module that was
exported (``torch.no_grad``, the same literal one-piece combination) and
through onnxruntime's CPU provider, both on ``--threads`` threads. Prints
a markdown table: median and min of ``--runs`` timed runs after
``--warmup`` untimed ones, plus the max |diff| of the scores.

``python -m benchmarks.onnx_latency [--config C] [--checkpoint F]
[--shape H W] [--threads N] [--runs N] [--dynamic]``

Needs the ``export`` extra (onnx, onnxruntime, onnxscript).
"""
import argparse
import os.path as osp
import statistics
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

DEMO = osp.join(REPO, 'configs', 'segvit',
                'segvit_vit-t8_1xb8-500iter_shapes-128x128.py')


def _times(fn, warmup: int, runs: int):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=DEMO)
    parser.add_argument(
        '--checkpoint',
        default='none',
        help="checkpoint file or 'none' (random weights)")
    parser.add_argument('--shape', type=int, nargs=2, default=(128, 128))
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--runs', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument(
        '--dynamic', action='store_true', help='time a --dynamic export')
    args = parser.parse_args()

    import onnxruntime as ort
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from mmseg_segvit.checkpoints import get_state_dict, load_weights_file
    from mmseg_segvit.deploy import export_onnx

    torch.set_num_threads(args.threads)
    cfg = Config.fromfile(args.config)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    cfg.model.pretrained = None
    cfg.model.backbone.pop('init_cfg', None)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    if args.checkpoint.lower() != 'none':
        model.load_state_dict(
            get_state_dict(
                load_weights_file(args.checkpoint), args.checkpoint))
    model.eval()
    shape = tuple(args.shape)

    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, 'model.onnx')
        wrapper = export_onnx(model, path, shape, dynamic=args.dynamic)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(
            path, options, providers=['CPUExecutionProvider'])
    inputs = torch.randn(
        1, 3, *shape, generator=torch.Generator().manual_seed(0))
    feed = {session.get_inputs()[0].name: inputs.numpy()}

    def run_torch():
        with torch.no_grad():
            return wrapper(inputs)

    ref = run_torch()
    diff = (torch.from_numpy(session.run(None, feed)[0]) - ref).abs().max()
    rows = [('PyTorch (eager)', _times(run_torch, args.warmup, args.runs)),
            ('onnxruntime CPU',
             _times(lambda: session.run(None, feed), args.warmup, args.runs))]
    weights = 'random weights' if args.checkpoint.lower() == 'none' else \
        osp.basename(args.checkpoint)
    print(f'{osp.basename(args.config)}, {weights}, input 1x3x{shape[0]}x'
          f'{shape[1]}, {args.threads} threads, '
          f'{"dynamic" if args.dynamic else "static"} export, torch '
          f'{torch.__version__}, onnxruntime {ort.__version__}; max |diff| '
          f'of the scores {diff.item():.2g}\n')
    print('| runtime | median ms | min ms |')
    print('|---|---:|---:|')
    for name, times in rows:
        print(f'| {name} | {1e3 * statistics.median(times):.1f} | '
              f'{1e3 * min(times):.1f} |')


if __name__ == '__main__':
    main()
