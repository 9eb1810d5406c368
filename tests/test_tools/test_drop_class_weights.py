"""drop_class_weights: a checkpoint of another class count becomes a
fine-tuning start (every tensor but the class ones kept)."""
import sys

import pytest
import torch
from fixtures import tiny_segmentor
from mmengine.runner import load_checkpoint

from mmseg_segvit.checkpoints import ConversionError
from mmseg_segvit.tools import drop_class_weights as tool


def test_drop_class_weights_tool_allows_fine_tuning(five_class_checkpoint,
                                                    tmp_path, monkeypatch,
                                                    capsys):
    old, path = five_class_checkpoint
    out = tmp_path / 'no_classes.pth'
    monkeypatch.setattr(sys, 'argv',
                        ['drop_class_weights',
                         str(path), str(out)])
    tool.main()
    assert 'decode_head.q.weight' in capsys.readouterr().out
    model = tiny_segmentor(num_classes=7)
    load_checkpoint(model, str(out), map_location='cpu')
    old_sd, new_sd = old.state_dict(), model.state_dict()
    for key, value in new_sd.items():
        if key.startswith(('decode_head.q.', 'decode_head.class_embed.')):
            assert value.shape[0] in (7, 8)
        else:
            assert torch.equal(value, old_sd[key]), key
    # the cross-attention's own q projection is not a class weight
    assert 'decode_head.decoders.0.layers.0.multihead_attn.q.weight' in \
        torch.load(out, weights_only=True)['state_dict']


def test_drop_class_weights_needs_an_atm_checkpoint():
    with pytest.raises(ConversionError, match='no ATMHead weights'):
        tool.drop_class_weights({'backbone.w': torch.zeros(1)})


@pytest.mark.parametrize('layout', ['bare', 'ddp', 'ema_only'])
def test_drop_class_weights_reads_every_layout(tmp_path, layout):
    model = tiny_segmentor(num_classes=5)
    state = model.state_dict()
    if layout == 'bare':
        saved = dict(state)
    elif layout == 'ddp':
        saved = {f'module.{k}': v for k, v in state.items()}
    else:  # mmengine's EMAHook state alone
        saved = dict(
            ema_state_dict={
                **{f'module.{k}': v
                   for k, v in state.items()}, 'steps': torch.tensor(3)
            })
    src, dst = tmp_path / 'src.pth', tmp_path / 'dst.pth'
    torch.save(saved, src)
    tool.main([str(src), str(dst)])
    out = torch.load(dst, weights_only=True)
    assert out['meta'] == {}
    kept = out['state_dict']
    assert 'decode_head.q.weight' not in kept
    assert torch.equal(kept['backbone.patch_embed.projection.weight'],
                       state['backbone.patch_embed.projection.weight'])
