"""mmseg_segvit: SegViT (NeurIPS 2022) for MMSegmentation 1.x."""
import os
import os.path as osp
import shutil
import sys
from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_version() -> str:
    scope = {}
    with open(osp.join(HERE, 'mmseg_segvit', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def add_mim_extension() -> None:
    """Mirror ``configs/`` and ``model-index.yml`` into the package's ``.mim``.

    mim (``mim search mmseg_segvit``, ``mim download``) reads them from
    ``mmseg_segvit/.mim`` of the installed package, as it does for MMSeg.
    Wheels and sdists get copies; editable installs get symlinks.
    """
    if 'develop' in sys.argv or 'editable_wheel' in sys.argv:
        mode = 'symlink'
    elif {'sdist', 'bdist_wheel', 'build', 'install'} & set(sys.argv):
        mode = 'copy'
    else:
        return
    mim_dir = osp.join(HERE, 'mmseg_segvit', '.mim')
    os.makedirs(mim_dir, exist_ok=True)
    for name in ('model-index.yml', 'configs'):
        src, dst = osp.join(HERE, name), osp.join(mim_dir, name)
        if not osp.exists(src):  # an sdist already holds .mim
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_dir), dst)
        elif osp.isdir(src):
            shutil.copytree(
                src, dst, ignore=shutil.ignore_patterns('__pycache__'))
        else:
            shutil.copyfile(src, dst)


add_mim_extension()

# mmcv comes in two flavours with the same import name: pick one extra.
# Installing mmcv-lite over a full mmcv overwrites its compiled ops.
MMCV_RANGE = '>=2.0.0rc4,<2.2.0'  # what mmsegmentation 1.2 accepts

setup(
    name='mmseg_segvit',
    version=read_version(),
    description='SegViT: semantic segmentation with plain vision '
    'transformers, for MMSegmentation 1.x',
    long_description=open(osp.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    license_files=['LICENSE'],
    python_requires='>=3.9',
    packages=find_packages(include=['mmseg_segvit', 'mmseg_segvit.*']),
    package_data={
        'mmseg_segvit': [
            '.mim/model-index.yml', '.mim/configs/*/*.py',
            '.mim/configs/*/*/*.py', '.mim/configs/*/*.yaml'
        ]
    },
    install_requires=[
        'torch>=2.6',  # loads with weights_only=True by default
        'timm>=0.9',
        'numpy',
        'mmengine>=0.10.0,<1.0',
        'mmsegmentation>=1.2.0,<1.3',
        # imported by mmseg/utils/tokenizer.py but not declared by mmseg
        'ftfy',
        'regex',
        'openmim>=0.3.9',
        # mmengine 0.10 imports pkg_resources, removed in setuptools 81
        'setuptools<81',
    ],
    extras_require={
        'lite': [f'mmcv-lite{MMCV_RANGE}'],
        'full': [f'mmcv{MMCV_RANGE}'],
        # MMSeg's analyze_logs tool imports seaborn (not declared by mmseg)
        'tools': ['seaborn'],
        # tools/export_onnx.py and mmseg_segvit.deploy: torch's exporter
        # writes the file, onnxruntime checks it
        'export': ['onnx', 'onnxruntime', 'onnxscript'],
        'tests': [
            'pytest>=7', 'hypothesis>=6', 'seaborn', 'onnx', 'onnxruntime',
            'onnxscript'
        ],
        'bench': ['matplotlib'],  # benchmarks/bench_models.py charts
        # `make lint`: MMSegmentation's linters at the versions of its
        # pre-commit hooks, with its settings (setup.cfg)
        'lint': [
            'flake8==5.0.4', 'isort==5.11.5', 'yapf==0.32.0',
            'docformatter==1.3.1'
        ],
    },
    classifiers=[
        'Programming Language :: Python :: 3',
        'License :: OSI Approved :: Apache Software License',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
)
