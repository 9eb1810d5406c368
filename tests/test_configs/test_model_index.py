"""model-index.yml and the metafile: mim reads them, the README agrees."""
import glob
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import yaml
from fixtures import REPO

METAFILE = osp.join(REPO, 'configs', 'segvit', 'metafile.yaml')
CONFIGS_README = osp.join(REPO, 'configs', 'segvit', 'README.md')


def _models():
    with open(METAFILE) as f:
        return yaml.safe_load(f)['Models']


def _readme_table():
    """Rows of the parameters and FLOPs table of configs/segvit/README.md, as a
    dict of cells per config stem (``path`` relative to the repository)."""
    lines = open(CONFIGS_README).read().splitlines()
    start = next(i for i, line in enumerate(lines)
                 if line.startswith('| config |') and 'paper mIoU' in line)
    header = [c.strip() for c in lines[start].strip('|').split('|')]
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith('|'):
            break
        cells = dict(
            zip(header, [c.strip() for c in line.strip('|').split('|')]))
        link = re.fullmatch(r'\[(.+)\]\((.+)\)', cells['config'])
        assert link, f'config cell is not a link: {cells["config"]}'
        assert osp.splitext(osp.basename(link.group(2)))[0] == link.group(1)
        path = osp.normpath(osp.join('configs', 'segvit', link.group(2)))
        rows[link.group(1)] = dict(cells, path=path)
    return rows


def test_model_index_imports_every_metafile():
    with open(osp.join(REPO, 'model-index.yml')) as f:
        imports = yaml.safe_load(f)['Import']
    found = sorted(
        osp.relpath(p, REPO) for p in glob.glob(
            osp.join(REPO, 'configs', '**', 'metafile.yaml'), recursive=True))
    assert sorted(imports) == found


def test_metafile_entries_name_existing_configs():
    names = set()
    for model in _models():
        assert model['In Collection'] == 'SegViT'
        config = model['Config']
        assert osp.isfile(osp.join(REPO, config)), config
        assert model['Name'] == osp.splitext(osp.basename(config))[0]
        assert model['Name'] not in names
        names.add(model['Name'])
        meta = model['Metadata']
        size = int(re.search(r'(\d+)x\d+\.py$', config).group(1))
        assert meta['Crop Size'] == f'{size}x{size}'
        assert meta['Parameters'] > 0
        if 'Results' in model:  # configs not trained yet have none
            assert model['Results']['Task'] == 'Semantic Segmentation'
            assert 'mIoU' in model['Results']['Metrics']
    shipped = {
        osp.splitext(osp.basename(p))[0]
        for p in glob.glob(osp.join(REPO, 'configs', 'segvit', '*.py'))
    }
    assert names == shipped


def test_readme_results_table_matches_metafile():
    rows = _readme_table()
    models = {m['Name']: m for m in _models() if m['Name'] in rows}
    assert set(rows) == set(models), 'README table and metafile differ'
    for name, row in rows.items():
        model = models[name]
        assert row['path'] == model['Config']
        miou = float(row['paper mIoU'].strip('()'))
        assert miou == model['Results']['Metrics']['mIoU'], name
        assert row['dataset'].split(' (')[0].lower().replace(
            '-', ' ') in model['Results']['Dataset'].lower().replace('-',
                                                                     ' '), name
        size = row['crop']
        assert model['Metadata']['Crop Size'] == f'{size}x{size}', name
        params = float(row['params (ours)'].rstrip('M'))
        assert params == pytest.approx(
            model['Metadata']['Parameters'] / 1e6, abs=0.006), name


def _configs_readme_results():
    """Rows of the results tables in configs/segvit/README.md."""
    text = open(CONFIGS_README).read()
    rows, header = {}, None
    for line in text.splitlines():
        if line.startswith('| Method |'):
            header = [c.strip() for c in line.strip('|').split('|')]
            continue
        if not line.startswith('|'):
            header = None
        if header is None:
            continue
        cells = [c.strip() for c in line.strip('|').split('|')]
        if set(cells[0]) <= {'-', ' '}:
            continue
        row = dict(zip(header, cells))
        stem = re.search(r'\((segvit[^)]+)\.py\)', row['config']).group(1)
        rows[stem] = row
    return rows


def test_configs_readme_results_match_metafile_and_names():
    rows = _configs_readme_results()
    models = {m['Name']: m for m in _models()}
    paper = {
        n
        for n, m in models.items() if 'Results' in m and 'shapes' not in n
    }
    assert set(rows) == paper
    for name, row in rows.items():
        model = models[name]
        metrics = model['Results']['Metrics']
        assert float(row['mIoU'].strip('()')) == metrics['mIoU'], name
        assert float(row['mIoU (ms+flip)'].strip('()')) == \
            metrics['mIoU(ms+flip)'], name
        assert row['Crop Size'] == model['Metadata']['Crop Size'], name
        assert int(row['Lr schd']) == model['Metadata']['Iterations'], name
        gpus, batch = re.search(r'_(\d+)xb(\d+)-', name).groups()
        assert row['Batch'] == f'{gpus}x{batch}', name
        assert model['Metadata']['Batch Size'] == int(gpus) * int(batch)


def test_configs_readme_demo_table_matches_metafile():
    """The measured demo figures (plain, on timm's ViT, Shrunk, local-QU
    Shrunk) are the metafile's."""
    text = open(CONFIGS_README).read()
    demo = text[text.index('## Demo'):]
    models = {m['Name']: m for m in _models()}
    rows = re.findall(
        r'^\| \[(\S+)\]\(\1\.py\)[^|]*\|[^|]*\|\s*(\d+)\s*\|'
        r'\s*([\d.]+)', demo, re.M)
    assert {r[0]
            for r in rows} == {
                'segvit_vit-t8_1xb8-500iter_shapes-128x128',
                'segvit_timm-vit-t8_1xb8-500iter_shapes-128x128',
                'segvit_vit-t8-shrunk_1xb8-1500iter_shapes-128x128',
                'segvit-localqu_vit-t8-shrunk_1xb8-1500iter_shapes-128x128'
            }
    for name, iters, miou in rows:
        model = models[name]
        assert int(iters) == model['Metadata']['Iterations'], name
        assert float(miou) == model['Results']['Metrics']['mIoU'], name


def test_readme_demo_result_matches_metafile():
    readme = open(osp.join(REPO, 'README.md')).read()
    demo = next(m for m in _models()
                if m['Name'] == 'segvit_vit-t8_1xb8-500iter_shapes-128x128')
    measured = float(re.search(r'\*\*([\d.]+) mIoU\*\*', readme).group(1))
    assert demo['Results']['Metrics']['mIoU'] == measured


def test_mim_parses_the_model_index():
    from mim.commands.search import convert2df
    from modelindex.load_model_index import load
    frame = convert2df(load(osp.join(REPO, 'model-index.yml')))
    name = 'segvit_vit-b16_8xb2-160k_ade20k-512x512'
    assert frame.loc[name, 'ade20k/miou'] == 51.3
    assert frame.loc[name, 'crop_size'] == '512x512'
    assert frame.loc[name, 'flops'] == 120.9e9
    assert len(frame) == len(_models())


@pytest.mark.slow
def test_mim_search_lists_the_configs_of_an_installed_wheel(tmp_path):
    """Build a wheel, install it aside and ask ``mim search``."""
    src = tmp_path / 'src'
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'],
                           cwd=REPO,
                           capture_output=True,
                           text=True,
                           check=True).stdout.split()
    for name in files:
        if not osp.isfile(osp.join(REPO, name)):
            continue
        os.makedirs(src / osp.dirname(name), exist_ok=True)
        with open(osp.join(REPO, name), 'rb') as f:
            (src / name).write_bytes(f.read())
    pip = [sys.executable, '-m', 'pip']
    subprocess.run(
        pip + [
            'wheel', '--no-deps', '--no-build-isolation', '-q', '-w',
            str(tmp_path / 'wheel'),
            str(src)
        ],
        check=True)
    wheel = next((tmp_path / 'wheel').glob('*.whl'))
    subprocess.run(
        pip + [
            'install', '--no-deps', '-q', '--target',
            str(tmp_path / 'site'),
            str(wheel)
        ],
        check=True)
    env = dict(os.environ, PYTHONPATH=str(tmp_path / 'site'))
    mim = osp.join(osp.dirname(sys.executable), 'mim')
    out = subprocess.run([mim, 'search', 'mmseg_segvit'],
                         env=env,
                         cwd=tmp_path,
                         capture_output=True,
                         text=True,
                         check=True).stdout
    for model in _models():
        assert f'config id: {model["Name"]}' in out
    assert 'ade20k/miou' in out and '51.3' in out
    installed = tmp_path / 'site' / 'mmseg_segvit' / '.mim'
    assert (installed / 'model-index.yml').is_file()
    assert (installed / 'configs' / 'segvit' / 'atm_head_swap').is_dir()


def test_changelog_names_the_package_version():
    import mmseg_segvit
    changelog = open(osp.join(REPO, 'CHANGELOG.md')).read()
    # Keep a Changelog: '## [Unreleased]' first, then the latest release
    assert re.search(r'^## \[Unreleased\]', changelog, re.M)
    latest = re.search(r'^## \[(\d+\.\d+\.\d+)\]', changelog, re.M).group(1)
    assert latest == mmseg_segvit.__version__
    assert mmseg_segvit.version_info == tuple(
        int(x) for x in latest.split('.'))
