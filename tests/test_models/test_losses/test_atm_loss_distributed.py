"""Two CPU processes (gloo) with MMDistributedDataParallel vs one process.

DDP averages gradients over processes. ATMLoss divides the mask terms of
each process by the mask count averaged over processes, M = (M0 + M1) / 2,
so the average of the per-process mask terms, (S0 / M + S1 / M) / 2,
equals the single-process term on the whole batch, (S0 + S1) / (M0 + M1).
The classification term is a weighted mean per process, so DDP optimises
the average of the per-half means; that equals the whole-batch mean when
both halves carry the same class weight (the same number of present
classes). Hence the identity checked here, for any labels:

    DDP objective = mask terms(whole batch) + mean over halves of CE(half)

and, for halves with equal present-class counts, DDP = one process on 2b.
"""
import os.path as osp

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
from fixtures import data_samples, tiny_segmentor_cfg
from mmengine.config import ConfigDict
from mmengine.model import MMDistributedDataParallel
from mmengine.optim import OptimWrapper
from mmseg.registry import MODELS

WORLD, B, SIZE, K, STEPS, LR = 2, 2, 32, 6, 2, 0.1
# Present classes per image (None: all pixels ignored).
CASES = {
    'balanced': [(0, 1), (2, 3), (4, 5), (0, 5)],
    'unbalanced': [(1, ), None, (0, 2, 3), (1, 4, 5)],
}


def _labels(case):
    gen = torch.Generator().manual_seed(1)
    labels = torch.full((len(CASES[case]), SIZE, SIZE), 255)
    for i, classes in enumerate(CASES[case]):
        if classes is None:
            continue
        pick = torch.randint(0, len(classes), (SIZE, SIZE), generator=gen)
        labels[i] = torch.tensor(classes)[pick]
        labels[i, :3] = 255
    return labels


def _images():
    gen = torch.Generator().manual_seed(2)
    return torch.randint(0, 255, (WORLD * B, 3, SIZE, SIZE), generator=gen)


def _model():
    torch.manual_seed(0)
    cfg = ConfigDict(
        tiny_segmentor_cfg(num_classes=K, size=(SIZE, SIZE), dropout=0.0))
    cfg.backbone.drop_path_rate = 0.0
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def _batch(imgs, labels):
    return dict(inputs=list(imgs.float()), data_samples=data_samples(labels))


def _worker(rank, tmpdir):
    import mmseg_segvit  # noqa: F401
    # isort: split
    from mmseg.utils import register_all_modules

    register_all_modules()
    torch.set_num_threads(1)
    torch_dist.init_process_group(
        'gloo',
        init_method=f'file://{osp.join(tmpdir, "rendezvous")}',
        rank=rank,
        world_size=WORLD)
    try:
        for case in CASES:
            # find_unused_parameters stays False: a parameter without a
            # gradient would make the second step fail.
            model = MMDistributedDataParallel(module=_model())
            optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=LR))
            part = slice(rank * B, (rank + 1) * B)
            data = _batch(_images()[part], _labels(case)[part])
            logs = [model.train_step(data, optim) for _ in range(STEPS)]
            torch.save(
                dict(
                    logs=[{k: v.item()
                           for k, v in log.items()} for log in logs],
                    params={
                        k: v.detach()
                        for k, v in model.module.state_dict().items()
                    }), osp.join(tmpdir, f'{case}_rank{rank}.pth'))
    finally:
        torch_dist.destroy_process_group()


def _reference(case):
    """One process: whole-batch losses and the DDP objective, SGD on it."""
    model = _model()
    optim = torch.optim.SGD(model.parameters(), lr=LR)
    imgs, labels = _images(), _labels(case)
    whole_logs, objective_logs = [], []
    for _ in range(STEPS):
        data = model.data_preprocessor(_batch(imgs, labels), True)
        whole = model.loss(data['inputs'], data['data_samples'])
        ce_halves = []
        for r in range(WORLD):
            part = slice(r * B, (r + 1) * B)
            half = model.loss(data['inputs'][part], data['data_samples'][part])
            ce_halves.append(sum(v for k, v in half.items() if 'loss_ce' in k))
        mask_terms = sum(v for k, v in whole.items()
                         if 'loss' in k and 'loss_ce' not in k)
        objective = mask_terms + sum(ce_halves) / WORLD
        whole_logs.append({k: v.item() for k, v in whole.items()})
        objective_logs.append(objective.item())
        optim.zero_grad()
        objective.backward()
        optim.step()
    return whole_logs, objective_logs, model.state_dict()


@pytest.fixture(scope='module')
def ddp_results(tmp_path_factory):
    tmpdir = tmp_path_factory.mktemp('ddp')
    mp.spawn(_worker, args=(str(tmpdir), ), nprocs=WORLD, join=True)
    return tmpdir


@pytest.mark.slow
@pytest.mark.parametrize('case', sorted(CASES))
def test_two_processes_match_one_process(case, ddp_results):
    ranks = [
        torch.load(ddp_results / f'{case}_rank{r}.pth', weights_only=True)
        for r in range(WORLD)
    ]
    whole, objective, params = _reference(case)
    for step in range(STEPS):
        logs = [r['logs'][step] for r in ranks]
        ddp_loss = sum(log['loss'] for log in logs) / WORLD
        assert ddp_loss == pytest.approx(objective[step], rel=1e-5)
        # mask terms, normalised by the mask count across processes
        for key in whole[step]:
            if 'loss_mask' in key or 'loss_dice' in key:
                mean = sum(log[key] for log in logs) / WORLD
                assert mean == pytest.approx(
                    whole[step][key], rel=1e-5, abs=1e-7), key
        single = sum(v for k, v in whole[step].items() if 'loss' in k)
        if case == 'balanced':
            assert ddp_loss == pytest.approx(single, rel=1e-5)
        else:  # the CE weighting differs; the mask terms do not
            assert abs(ddp_loss - single) > 1e-4
    # identical parameters on both processes, equal to the reference
    for key, value in params.items():
        torch.testing.assert_close(
            ranks[0]['params'][key], ranks[1]['params'][key], rtol=0, atol=0)
        torch.testing.assert_close(
            ranks[0]['params'][key], value, rtol=1e-4, atol=1e-6)
