"""benchmarks/train_step.py: variants of a config timed in turns."""
import pytest
from fixtures import DEMO_CONFIG

from benchmarks.train_step import (check_overrides, parse_variants, table,
                                   time_steps)


def test_parse_variants_reads_values_as_cfg_options():
    variants = parse_variants([['base'],
                               [
                                   'drop', 'model.decode_head.dropout=0.1',
                                   'train_cfg.max_iters=3', 'a.b=[1,2]'
                               ]])
    assert variants == [('base', {}),
                        ('drop', {
                            'model.decode_head.dropout': 0.1,
                            'train_cfg.max_iters': 3,
                            'a.b': [1, 2]
                        })]


@pytest.mark.parametrize('words,match', [
    ([['a.b=1']], 'needs a name first'),
    ([['x', 'a.b']], "'a.b' is not a key=value"),
    ([['x'], ['x', 'a=1']], 'names must differ'),
])
def test_parse_variants_refuses_bad_variants(words, match):
    with pytest.raises(ValueError, match=match):
        parse_variants(words)


def test_time_steps_times_every_variant_on_the_demo(demo_data_root):
    data = {'train_dataloader.dataset.data_root': demo_data_root}
    small = {
        'train_dataloader.batch_size': 2,
        'model.backbone.num_layers': 2,
        'model.backbone.out_indices': [0, 1],
        'model.decode_head.use_stages': 2,
        **data
    }
    times = time_steps(
        DEMO_CONFIG,
        [('a', small),
         ('b', dict(small, **{'model.decode_head.dropout': 0.0}))],
        steps=2,
        warmup=1)
    assert list(times) == ['a', 'b']
    assert all(len(v) == 2 and min(v) > 0 for v in times.values())
    rows = table(times).splitlines()
    assert rows[0].startswith('| variant | median ms / step')
    assert rows[2].startswith('| a |') and rows[2].endswith('| 1.00x |')
    assert rows[3].startswith('| b |')


@pytest.mark.parametrize('variants,match', [
    ([('a', {
        'modle.decode_head.dropout': 0.1
    })], "modle.decode_head.dropout is not a setting .*'modle'"),
    ([('a', {}), ('b', {
        'train_dataloader.batch_size': 2
    })], 'put data overrides in the first --variant'),
])
def test_check_overrides_refuses_what_would_time_the_wrong_thing(
        variants, match):
    with pytest.raises(ValueError, match=match):
        check_overrides(DEMO_CONFIG, variants)


def test_check_overrides_takes_new_leaves_of_existing_settings():
    check_overrides(DEMO_CONFIG, [('a', {
        'train_dataloader.batch_size': 2
    }), ('b', {
        'model.decode_head.dropout': 0.0,
        'model.backbone.new_key': 1
    })])
