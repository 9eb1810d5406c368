"""The memory plan of the mask combination: rows per band chosen by device and
size (a budget), never by one constant."""
import torch

from mmseg_segvit.models.layers import memory_budget, memory_plan, plan_rows

CUDA = torch.device('cuda')  # plan_rows only reads its type
CPU = torch.device('cpu')


def test_cuda_plan_is_one_piece_when_it_fits_the_budget():
    # (B, Q + K, H, W) fp32 transients of an ADE20K batch of 16
    need = 16 * (150 + 150) * 512 * 512 * 4
    assert plan_rows(16, 150, 150, (512, 512), CUDA, 4, budget=need) == 512
    assert plan_rows(16, 150, 150, (512, 512), CUDA, 2, budget=need) == 512


def test_cuda_plan_takes_the_fewest_balanced_bands_that_fit():
    row = 2 * (3 + 4) * 30 * 4
    # room for 7 of 17 rows: 3 bands of 6 rows (not 7 + 7 + 3)
    assert plan_rows(2, 3, 4, (17, 30), CUDA, 4, budget=7 * row) == 6
    assert plan_rows(2, 3, 4, (17, 30), CUDA, 4, budget=16 * row) == 9
    # less than one row still makes progress
    assert plan_rows(2, 3, 4, (17, 30), CUDA, 4, budget=1) == 1


def test_cuda_default_budget_is_a_share_of_available_memory(monkeypatch):
    available = []
    monkeypatch.setattr(memory_plan, '_cuda_available_bytes',
                        lambda device: available[-1])
    row = 16 * 300 * 512 * 4
    available.append(512 * row / memory_plan.CUDA_MEMORY_FRACTION)
    assert plan_rows(16, 150, 150, (512, 512), CUDA, 4) == 512
    available.append(available[0] / 4)  # a quarter of that: four bands
    assert plan_rows(16, 150, 150, (512, 512), CUDA, 4) == 128


def test_cpu_plan_fills_one_cache_with_resized_masks(monkeypatch):
    monkeypatch.setattr(memory_plan, 'cpu_band_bytes', lambda: 1 << 21)
    row = 2 * 150 * 512 * 4  # resized masks only: the cached part
    rows = plan_rows(2, 150, 150, (512, 512), CPU, 4)
    assert rows * row <= 1 << 21 < (rows + 1) * row
    assert plan_rows(1, 2, 2, (8, 8), CPU, 4) == 8  # small: one piece


def test_cpu_band_bytes_reads_a_plausible_cache_size():
    size = memory_plan.cpu_band_bytes()
    assert 64 << 10 <= size <= 1 << 30


def test_memory_budget_context_overrides_the_device(monkeypatch):
    monkeypatch.setattr(memory_plan, 'cpu_band_bytes', lambda: 1)
    assert plan_rows(1, 3, 3, (9, 9), CPU, 4) == 1
    with memory_budget(float('inf')):
        assert plan_rows(1, 3, 3, (9, 9), CPU, 4) == 9
        with memory_budget(None):
            assert plan_rows(1, 3, 3, (9, 9), CPU, 4) == 1
    assert plan_rows(1, 3, 3, (9, 9), CPU, 4) == 1


def test_cpu_band_bytes_falls_back_where_the_system_does_not_say(
        monkeypatch, tmp_path):
    (tmp_path / 'index0').mkdir()  # an L1 entry only
    (tmp_path / 'index0' / 'level').write_text('1\n')
    (tmp_path / 'index0' / 'size').write_text('32K\n')
    (tmp_path / 'index2').mkdir()
    (tmp_path / 'index2' / 'level').write_text('2\n')
    (tmp_path / 'index2' / 'size').write_text('512K\n')
    monkeypatch.setattr(memory_plan, '_CPU0_CACHE_DIR', str(tmp_path))
    memory_plan.cpu_band_bytes.cache_clear()
    try:
        assert memory_plan.cpu_band_bytes() == 512 << 10
        memory_plan.cpu_band_bytes.cache_clear()
        (tmp_path / 'index2' / 'level').write_text('3\n')
        assert memory_plan.cpu_band_bytes() == \
            memory_plan.DEFAULT_L2_CACHE_BYTES
    finally:
        memory_plan.cpu_band_bytes.cache_clear()


def test_metric_budget_is_a_share_of_the_step_on_cuda_only(monkeypatch):
    held = 64 << 20
    monkeypatch.setattr(torch.cuda, 'memory_allocated', lambda device: held)
    assert memory_plan.metric_budget(CUDA) == \
        held * memory_plan.METRIC_MEMORY_FRACTION
    assert memory_plan.metric_budget(CPU) is None
    with memory_budget(float('inf')):  # an explicit budget wins
        assert memory_plan.metric_budget(CUDA) is None
