"""Utilities: FLOP counting (its handles reach mmengine's global table only
through :func:`register_flop_handles`), reading images through a config's
test pipeline, MMSeg pipelines with ClampedResize."""
from .config_pipeline import (clamped_resize, clamped_resize_pipelines,
                              config_test_pipeline, displayable, load_for_test)
from .flops import (ACTIVATION_HANDLES, FLOP_HANDLES, FlopCount, count_flops,
                    flops_summary, native_mha_activation_jit,
                    native_mha_flop_jit, register_flop_handles,
                    sdpa_activation_jit, sdpa_flop_jit)

__all__ = [
    'ACTIVATION_HANDLES', 'FLOP_HANDLES', 'FlopCount', 'count_flops',
    'flops_summary', 'native_mha_activation_jit', 'native_mha_flop_jit',
    'register_flop_handles', 'sdpa_activation_jit', 'sdpa_flop_jit',
    'config_test_pipeline', 'displayable', 'load_for_test', 'clamped_resize',
    'clamped_resize_pipelines'
]
