"""MMSeg's packaged tools on SegViT configs, through mmseg_tool."""
import glob
import json
import os.path as osp

import pytest
from fixtures import DEMO_CONFIG, save_shapes_checkpoint

from mmseg_segvit.tools import mmseg_tool


def test_find_tool_by_name_and_by_folder():
    flops = mmseg_tool.find_tool('get_flops')
    assert flops.endswith(osp.join('analysis_tools', 'get_flops.py'))
    # two scripts are called browse_dataset; the folder picks one
    misc = mmseg_tool.find_tool('misc:browse_dataset')
    assert misc.endswith(osp.join('misc', 'browse_dataset.py'))
    assert osp.isfile(mmseg_tool.find_tool('analysis_tools:browse_dataset'))
    for name in ('analyze_logs', 'confusion_matrix', 'benchmark', 'train',
                 'test'):
        assert osp.isfile(mmseg_tool.find_tool(name))
    with pytest.raises(ValueError, match='no tool .*get_flops'):
        mmseg_tool.find_tool('no_such_tool')


def test_get_flops_counts_the_demo_model(capsys):
    mmseg_tool.main(['get_flops', DEMO_CONFIG, '--shape', '64', '64'])
    out = capsys.readouterr().out
    assert 'Input shape: (64, 64)' in out
    assert 'Params: 2.888M' in out
    flops = float(out.split('Flops: ')[1].split('G')[0])
    assert 0.05 < flops < 1.0


def test_browse_dataset_draws_the_labels(demo_data_root, tmp_path):
    out = tmp_path / 'browse'
    mmseg_tool.main([
        'browse_dataset', DEMO_CONFIG, '--output-dir',
        str(out), '--not-show', '--cfg-options',
        f'train_dataloader.dataset.data_root={demo_data_root}',
        'train_dataloader.dataset.indices=3'
    ])
    assert len(glob.glob(str(out / '*.png'))) == 3


def test_analyze_logs_plots_a_curve(tmp_path):
    """mmengine's scalars.json, as a demo run writes it."""
    pytest.importorskip('seaborn', reason='analyze_logs needs seaborn')
    log = tmp_path / 'scalars.json'
    with open(log, 'w') as f:
        for step in range(10, 60, 10):
            f.write(
                json.dumps(dict(lr=1e-3, loss=2.0 / step, step=step)) + '\n')
        f.write(
            json.dumps(dict(aAcc=90.0, mIoU=50.0, mAcc=60.0, step=50)) + '\n')
    out = tmp_path / 'loss.png'
    mmseg_tool.main([
        'analyze_logs',
        str(log), '--keys', 'loss', '--legend', 'loss', '--out',
        str(out)
    ])
    assert out.stat().st_size > 1000
    out = tmp_path / 'miou.png'
    mmseg_tool.main(
        ['analyze_logs',
         str(log), '--keys', 'mIoU', '--out',
         str(out)])
    assert out.stat().st_size > 1000


def test_help_and_missing_tool(capsys):
    mmseg_tool.main(['--help'])
    assert 'mmseg_tool TOOL' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        mmseg_tool.main([])


@pytest.fixture(scope='module')
def demo_checkpoint(tmp_path_factory):
    """The demo model, freshly built, saved as mmengine saves one."""
    import torch
    from mmengine.config import Config
    from mmseg.registry import MODELS
    model = MODELS.build(Config.fromfile(DEMO_CONFIG).model)
    model.init_weights()
    path = save_shapes_checkpoint(
        model, str(tmp_path_factory.mktemp('ckpt') / 'demo.pth'))
    torch.manual_seed(0)
    return path


@pytest.mark.slow
def test_test_predictions_then_confusion_matrix(demo_data_root,
                                                demo_checkpoint, tmp_path):
    subset = [
        f'test_dataloader.dataset.data_root={demo_data_root}',
        'test_dataloader.dataset.indices=4'
    ]
    preds = tmp_path / 'preds'
    mmseg_tool.main([
        'test', DEMO_CONFIG, demo_checkpoint, '--work-dir',
        str(tmp_path / 'work'), '--out',
        str(preds), '--cfg-options', *subset
    ])
    assert len(glob.glob(str(preds / '*.png'))) == 4
    mmseg_tool.main([
        'confusion_matrix', DEMO_CONFIG,
        str(preds),
        str(tmp_path / 'cm'), '--cfg-options', *subset
    ])
    assert (tmp_path / 'cm' / 'confusion_matrix.png').stat().st_size > 1000


@pytest.mark.slow
def test_benchmark_times_200_images(demo_data_root, demo_checkpoint, tmp_path):
    """benchmark times images 6 to 200: the demo's train split has 400."""
    config = tmp_path / 'bench.py'
    config.write_text(f"_base_ = [{DEMO_CONFIG!r}]\n"
                      "test_dataloader = dict(dataset=dict(\n"
                      f"    data_root={demo_data_root!r},\n"
                      "    data_prefix=dict(img_path='img_dir/train',\n"
                      "                     seg_map_path='ann_dir/train')))\n")
    mmseg_tool.main([
        'benchmark',
        str(config), demo_checkpoint, '--work-dir',
        str(tmp_path / 'bench'), '--log-interval', '100'
    ])
    result = json.load(
        open(glob.glob(str(tmp_path / 'bench' / 'fps_*.json'))[0]))
    assert result['average_fps'] > 0


def _demo_config_on(tmp_path, data_root, split):
    config = tmp_path / f'demo_{split}.py'
    config.write_text(
        f"_base_ = [{DEMO_CONFIG!r}]\n"
        "test_dataloader = dict(dataset=dict(\n"
        f"    data_root={data_root!r},\n"
        f"    data_prefix=dict(img_path='img_dir/{split}',\n"
        f"                     seg_map_path='ann_dir/{split}')))\n")
    return str(config)


def test_benchmark_on_too_few_images_is_an_error_not_nan(
        demo_data_root, tmp_path):
    """The demo's test split has 100 images; benchmark times 6 to 200."""
    config = _demo_config_on(tmp_path, demo_data_root, 'val')
    work_dir = tmp_path / 'bench'
    ckpt = tmp_path / 'any.pth'
    ckpt.write_bytes(b'')  # never read: the check comes first
    with pytest.raises(SystemExit) as err:
        mmseg_tool.main(
            ['benchmark', config,
             str(ckpt), '--work-dir',
             str(work_dir)])
    message = str(err.value)
    assert 'test images 6 to 200' in message
    assert 'has 100 images, so it would report NaN' in message
    assert not glob.glob(str(work_dir / 'fps_*.json'))
    with pytest.raises(SystemExit, match='checkpoint .*missing.pth not found'):
        mmseg_tool.main(['benchmark', config, str(tmp_path / 'missing.pth')])


def test_no_nan_result_is_written(tmp_path):
    import mmengine.fileio as fileio
    with mmseg_tool._NoNaNResults():
        with pytest.raises(SystemExit, match='average_fps'):
            fileio.dump(
                dict(average_fps=float('nan'), unit='img / s'),
                str(tmp_path / 'fps.json'))
        fileio.dump(dict(average_fps=12.5), str(tmp_path / 'ok.json'))
    assert not (tmp_path / 'fps.json').exists()
    assert json.load(open(tmp_path / 'ok.json')) == dict(average_fps=12.5)
    assert not hasattr(fileio.dump, '__wrapped__')  # restored
