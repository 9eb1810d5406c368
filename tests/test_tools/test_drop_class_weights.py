"""drop_class_weights: a checkpoint of another class count becomes a
fine-tuning start (every tensor but the class ones kept)."""
import sys

import pytest
import torch
from mmengine.runner import load_checkpoint

from fixtures import tiny_segmentor
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
