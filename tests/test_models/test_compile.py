"""torch.compile (what mmengine's ``compile=True`` runner option applies) on a
tiny SegViT: where it breaks the graph, and that inductor's code computes what
eager mode computes."""
import pytest
import torch
from fixtures import data_samples, tiny_segmentor

SIZE = 64
METAS = [
    dict(
        img_shape=(SIZE, SIZE), pad_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE))
] * 2


def _model(**kwargs):
    torch.manual_seed(0)
    return tiny_segmentor(
        num_classes=5, size=(SIZE, SIZE), dropout=0.0, **kwargs)


def _break_sites(explained):
    return sorted({(b.user_stack[-1].name if b.user_stack else '?')
                   for b in explained.break_reasons})


def test_inference_traces_as_one_graph():
    model = _model().eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        explained = torch._dynamo.explain(model.encode_decode)(x, METAS)
    assert explained.graph_break_count == 0, _break_sites(explained)


def test_training_breaks_only_where_the_data_decides():
    """The loss checks the label range (a clear error needs the host) and picks
    the masks of the classes present (data-dependent count); nothing else
    breaks the graph.

    A break inside a nested call breaks every frame on its stack (model.loss
    down to ATMLoss.get_targets), hence the count.
    """
    model = _model().train()
    x = torch.randn(2, 3, SIZE, SIZE)
    labels = torch.randint(0, 5, (2, SIZE, SIZE))
    explained = torch._dynamo.explain(model.loss)(x, data_samples(labels))
    assert set(_break_sites(explained)) <= {
        'present_classes', 'get_targets', 'forward'
    }
    assert explained.graph_break_count <= 7


@pytest.mark.slow
def test_inductor_inference_equals_eager():
    torch._dynamo.reset()
    model = _model().eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        eager = model.encode_decode(x, METAS)
        compiled = torch.compile(model.encode_decode, backend='inductor')
        out = compiled(x, METAS)
    assert out.shape == (2, 5, SIZE, SIZE)
    torch.testing.assert_close(out, eager, rtol=1e-4, atol=1e-5)
