"""Export a SegViT segmentor to ONNX and check it with onnxruntime.

Usage::

    python tools/export_onnx.py CONFIG CHECKPOINT OUT.onnx [--shape H [W]]
        [--dynamic] [--opset N] [--output scores|labels]
        [--order faithful|fast] [--verbose]

CHECKPOINT may be ``none`` (random weights). The file maps a normalised
image batch ``inputs`` (B, 3, H, W) (the config's test pipeline and data
preprocessor already applied: ``mmseg_segvit.deploy.prepare_inputs``) to
per-class ``scores`` (B, K, H, W) or ``labels`` (B, H, W)
(:class:`mmseg_segvit.deploy.SegmentorForExport`); the labels at the
image's own size come from the scores with
``mmseg_segvit.deploy.predict_labels``. Without ``--dynamic`` the graph
takes one (1, 3, H, W) batch (default: the config's crop); with it, batch
and image size are dynamic, any size (one off the patch grid is padded in
the graph as the patch embedding pads it; a dynamic ShrunkViT goes through
torch's dynamo exporter, everything else through the TorchScript one, see
``--exporter``). A config that predicts with sliding windows
(``model.test_cfg.mode='slide'``) is refused before tracing, with what to
do. After writing, the file is run with onnxruntime (CPU) on random
batches and compared with PyTorch (with ``--dynamic`` at the traced size,
half, about twice and a size off the patch grid; see
``mmseg_segvit.deploy.check_shapes``): the tool prints the max abs
difference of the scores and the arg-max agreement at each and exits with
status 1 above ``--atol`` or below ``--min-agreement``. Those lines are
all it prints: mmengine's log (weight initialisation) and the exporter's
warnings and messages are hidden unless ``--verbose`` is given.

Needs the ``export`` extra: ``pip install 'mmseg_segvit[export]'``.
"""
import argparse
import os.path as osp
import sys
import warnings

if '--verbose' not in sys.argv[1:]:  # import-time deprecation notices
    warnings.simplefilter('ignore')
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmseg_segvit.checkpoints import get_state_dict, load_weights_file
from mmseg_segvit.deploy import (EXPORTERS, ORDERS, OUTPUTS, check_exportable,
                                 check_onnx, check_shapes, choose_exporter,
                                 export_onnx)
from mmseg_segvit.utils.cli import (add_cfg_options_argument,
                                    add_shape_argument, add_verbose_argument,
                                    model_and_shape, quiet_output)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Export a SegViT segmentor to ONNX, check it with '
        'onnxruntime')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        'checkpoint', help="checkpoint file, or 'none' for "
        'random weights')
    parser.add_argument('out', help='output .onnx file')
    add_shape_argument(parser)
    parser.add_argument(
        '--dynamic',
        action='store_true',
        help='dynamic batch and image size (any size)')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset')
    parser.add_argument(
        '--output',
        choices=OUTPUTS,
        default='scores',
        help="'scores' (B, K, H, W) or 'labels' (B, H, W)")
    parser.add_argument(
        '--order',
        choices=ORDERS,
        default=None,
        help="'faithful' (official: resize the masks, then combine) or "
        "'fast' (combine near the mask grid, then resize the scores); "
        "default: the config's (decode_head.fast_inference)")
    parser.add_argument(
        '--exporter',
        choices=EXPORTERS,
        default='auto',
        help="torch's exporter: 'auto' (dynamo for a dynamic ShrunkViT, "
        "else TorchScript), 'torchscript' or 'dynamo' (opset >= 18)")
    parser.add_argument(
        '--atol',
        type=float,
        default=1e-3,
        help='largest max |diff| of the scores accepted')
    parser.add_argument(
        '--min-agreement',
        type=float,
        default=0.999,
        help='smallest arg-max agreement accepted')
    add_cfg_options_argument(parser)
    add_verbose_argument(parser)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with quiet_output(args.verbose):
        model, shape = model_and_shape(args)
    try:  # before reading weights or tracing
        check_exportable(model, shape, args.dynamic)
    except ValueError as err:
        raise SystemExit(f'error: {err}')
    with quiet_output(args.verbose):
        if args.checkpoint.lower() == 'none':
            model.init_weights()
        else:
            model.load_state_dict(
                get_state_dict(
                    load_weights_file(args.checkpoint), args.checkpoint))
    if args.checkpoint.lower() == 'none':
        print('random weights')
    model.eval()

    try:
        exporter = choose_exporter(model, args.dynamic, args.exporter)
        with quiet_output(args.verbose):
            wrapper = export_onnx(model, args.out, shape, args.dynamic,
                                  args.opset, args.output, args.order,
                                  exporter)
    except ValueError as err:
        raise SystemExit(str(err))
    opset = max(args.opset, 18) if exporter == 'dynamo' else args.opset
    print(f'wrote {args.out} ({exporter} exporter, opset {opset}, output '
          f'{args.output}, order {wrapper.order}, ' +
          ('dynamic batch and size)' if args.
           dynamic else f'static 1x3x{shape[0]}x{shape[1]})'))
    ok = True
    with quiet_output(args.verbose):
        results = list(
            check_onnx(args.out, wrapper,
                       check_shapes(model, shape, args.dynamic)))
    for res in results:
        b, h, w = res.shape
        diff = 'n/a' if res.max_abs_diff is None else \
            f'{res.max_abs_diff:.3g}'
        passed = res.passed(args.atol, args.min_agreement)
        ok &= passed
        print(f'onnxruntime vs PyTorch at {b}x3x{h}x{w}: max |diff| of the '
              f'scores {diff}, argmax agreement {res.agreement:.6f} '
              f'{"ok" if passed else "FAILED"}')
    if not ok:
        print(
            f'FAILED: tolerance max |diff| <= {args.atol}, agreement >= '
            f'{args.min_agreement}',
            file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    main()
