"""Importing the package registers modules and applies the documented compat
steps (a light mmcv.ops where mmcv has no compiled ops, the weights_only allow-
list); it changes no attribute of mmseg or mmengine."""
import pytest
from fixtures import run_python


def _run(code: str) -> str:
    return run_python(code).strip()


def test_import_leaves_mmseg_and_mmengine_as_they_were():
    out = _run('''
        import mmseg_segvit.compat  # the documented compat steps first
        from mmengine.analysis import complexity_analysis
        from mmseg.datasets import BaseSegDataset
        prepare = BaseSegDataset.prepare_data
        flops = dict(complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS)
        import mmseg_segvit  # models, datasets, utils, checkpoints
        print(BaseSegDataset.prepare_data is prepare,
              complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS == flops,
              'aten::scaled_dot_product_attention' in flops)
    ''')
    assert out.splitlines()[-1] == 'True True False'


def test_global_changes_happen_only_when_asked_for():
    out = _run('''
        import mmseg_segvit
        from mmengine.analysis import complexity_analysis
        from mmseg.datasets import BaseSegDataset
        from mmseg_segvit.datasets import file_errors
        from mmseg_segvit.utils import register_flop_handles
        register_flop_handles()
        print(file_errors.install(), file_errors.install(),
              getattr(BaseSegDataset.prepare_data, '_names_files', False),
              'aten::scaled_dot_product_attention' in
              complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS)
    ''')
    assert out.splitlines()[-1] == 'True False True True'


@pytest.mark.parametrize('name', ['CheckedSegDataset', 'SegVitShapesDataset'])
def test_package_datasets_name_files_without_a_global_patch(name):
    from mmseg_segvit import datasets
    from mmseg_segvit.datasets import NamedFileErrorsMixin
    assert issubclass(getattr(datasets, name), NamedFileErrorsMixin)
