"""Faithful vs fast ATM inference order on a trained model's test set.

The faithful order resizes the K mask logits to the input before combining
them with the class probabilities; the fast order (``ATMHead(
fast_inference=True)``) combines at mask resolution and resizes the (B, K,
h, w) scores. One forward pass per image feeds both; the script reports the
share of pixels whose argmax agrees, each order's mIoU and the head's
``predict_by_feat`` time in each order.

``python -m benchmarks.inference_order CONFIG CHECKPOINT [--limit N]``
"""
import argparse
import copy
import os.path as osp
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument(
        '--limit',
        type=int,
        default=None,
        help='use only the first N test images')
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--scale',
        type=int,
        default=None,
        help='fast_inference_scale of the fast order '
        '(default: the config\'s)')
    args = parser.parse_args()

    import mmseg_segvit  # noqa: F401  (compat first)
    # isort: split
    import torch
    from mmengine.runner import Runner
    from mmseg.apis import init_model
    from mmseg.evaluation import IoUMetric
    from mmseg.utils import register_all_modules

    register_all_modules()

    model = init_model(args.config, args.checkpoint, device=args.device)
    loader = Runner.build_dataloader(model.cfg.test_dataloader)
    head = model.decode_head
    if args.scale is not None:
        head.fast_inference_scale = args.scale
    metrics = {}
    for fast in (False, True):
        metrics[fast] = IoUMetric(iou_metrics=['mIoU'])
        metrics[fast].dataset_meta = loader.dataset.metainfo
    agree = total = images = 0
    seconds = {False: 0.0, True: 0.0}
    with torch.no_grad():
        for batch in loader:
            data = model.data_preprocessor(batch, False)
            inputs, samples = data['inputs'], data['data_samples']
            metas = [s.metainfo for s in samples]
            out = head(model.extract_feat(inputs))
            preds = {}
            for fast in (False, True):
                head.fast_inference = fast
                start = time.perf_counter()
                logits = head.predict_by_feat(out, metas)
                seconds[fast] += time.perf_counter() - start
                results = model.postprocess_result(logits,
                                                   copy.deepcopy(samples))
                preds[fast] = [r.pred_sem_seg.data for r in results]
                metrics[fast].process(batch, [r.to_dict() for r in results])
            for a, b in zip(preds[False], preds[True]):
                agree += (a == b).sum().item()
                total += a.numel()
            images += len(samples)
            if args.limit and images >= args.limit:
                break
    if not images:
        raise SystemExit('error: the config\'s test_dataloader gave no '
                         'image: nothing to compare')
    print(f'{images} images, {total} pixels, fast_inference_scale '
          f'{head.fast_inference_scale}')
    print(f'argmax agreement fast vs faithful: {100 * agree / total:.3f}%')
    for fast, name in ((False, 'faithful'), (True, 'fast')):
        miou = metrics[fast].compute_metrics(metrics[fast].results)['mIoU']
        print(f'{name:8s} order: mIoU {miou:.2f}, predict_by_feat '
              f'{1000 * seconds[fast] / images:.2f} ms/image')


if __name__ == '__main__':
    main()
