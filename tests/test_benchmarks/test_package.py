"""benchmarks/ as a package: every script runs as ``python -m
benchmarks.<name>``, imports its siblings as ``benchmarks.<name>`` with no
import cycle and no ``sys.path`` edit, and ``bench_models`` keeps the names
external harnesses import it for."""
import ast
import glob
import importlib
import inspect
import os.path as osp
import sys

import pytest
import torch
from fixtures import REPO

BENCH = osp.join(REPO, 'benchmarks')
MODULES = sorted(
    osp.splitext(osp.basename(p))[0]
    for p in glob.glob(osp.join(BENCH, '*.py'))
    if not p.endswith('__init__.py'))
LIBRARIES = ('common', 'cpu_memory')  # shared pieces, not scripts


def _tree(name):
    with open(osp.join(BENCH, name + '.py')) as f:
        return ast.parse(f.read())


def _siblings(name):
    """The benchmarks modules ``name`` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == 'benchmarks':
                found.update(a.name for a in node.names)
            elif node.module.startswith('benchmarks.'):
                found.add(node.module.split('.')[1])
            elif node.level == 0 and node.module in MODULES:
                found.add(node.module)  # a bare sibling import
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split('.')
                if parts[0] == 'benchmarks' and len(parts) > 1:
                    found.add(parts[1])
                elif alias.name in MODULES:
                    found.add(alias.name)
    return found


def test_the_scripts_are_found():
    assert {'bench_models', 'op_counts', 'common', 'cpu_memory', 'demo_miou'
            } <= set(MODULES)


@pytest.mark.parametrize('name', MODULES)
def test_a_module_edits_no_sys_path_and_imports_siblings_by_package(name):
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.Attribute) and node.attr == 'path':
            assert not (isinstance(node.value, ast.Name)
                        and node.value.id == 'sys'), \
                f'benchmarks/{name}.py touches sys.path'
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            assert node.module not in MODULES, \
                f'benchmarks/{name}.py imports {node.module} by bare name'
        if isinstance(node, ast.Import):
            assert not {a.name for a in node.names} & set(MODULES), \
                f'benchmarks/{name}.py imports a sibling by bare name'


def test_the_modules_import_each_other_without_a_cycle():
    graph = {name: _siblings(name) for name in MODULES}
    assert 'common' in graph['bench_models']
    assert 'common' in graph['op_counts']
    assert 'bench_models' not in graph['op_counts']
    done, visiting = set(), []

    def visit(name):
        assert name not in visiting, \
            'import cycle: ' + ' -> '.join(visiting + [name])
        if name in done:
            return
        visiting.append(name)
        for sibling in graph[name]:
            visit(sibling)
        visiting.pop()
        done.add(name)

    for name in MODULES:
        visit(name)


@pytest.mark.parametrize('name', MODULES)
def test_a_module_imports_as_part_of_the_package(name):
    module = importlib.import_module(f'benchmarks.{name}')
    if name not in LIBRARIES:
        assert callable(module.main)  # python -m benchmarks.<name>
        with open(module.__file__) as f:
            assert "if __name__ == '__main__':" in f.read()


def test_bench_models_by_name_keeps_the_harness_interface(monkeypatch):
    """A harness that puts ``benchmarks/`` and the checkout on sys.path,
    imports ``bench_models`` and calls ``SPECS``, ``build_model(spec, crop)``
    and ``fake_batch(batch, crop, num_classes, device)``."""
    monkeypatch.syspath_prepend(BENCH)
    monkeypatch.syspath_prepend(REPO)
    monkeypatch.delitem(sys.modules, 'bench_models', raising=False)
    try:
        bm = importlib.import_module('bench_models')
        spec = bm.SPECS['segvit-b']
        inspect.signature(bm.build_model).bind(spec, spec.crop)
        model = bm.build_model(spec, 64, tiny=True)
        x, metas, samples = bm.fake_batch(2, 64, model.decode_head.num_classes,
                                          torch.device('cpu'))
        assert x.shape == (2, 3, 64, 64) and len(samples) == 2
        model.eval()
        with torch.no_grad():
            out = model.encode_decode(x, metas)
        assert out.shape == (2, model.decode_head.num_classes, 64, 64)
    finally:
        sys.modules.pop('bench_models', None)
