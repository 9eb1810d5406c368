"""Export a SegViT segmentor to ONNX and check it with onnxruntime.

:class:`SegmentorForExport` is the segmentor's whole-image inference as one
module taking a normalised (B, 3, H, W) batch: ``extract_feat``, the decode
head's ``forward`` and :func:`~mmseg_segvit.models.layers.combine` of its
last output at the input size, computed in one piece (``memory_budget(inf)``,
the literal algorithm, no device-dependent bands).

:func:`export_onnx` traces it with torch's TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``), or with the torch.export-based
one where TorchScript cannot keep the sizes dynamic (a dynamic ShrunkViT,
:func:`choose_exporter`); :func:`check_onnx` runs the file
with onnxruntime on CPU and compares it with PyTorch. ``onnx``,
``onnxruntime`` and ``onnxscript`` come with the ``export`` extra
(``pip install mmseg_segvit[export]``).
"""
import contextlib
import warnings
from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..typing_utils import Size
from ..models.layers.mask_combination import memory_budget
from ..models.layers.vit_layer import patch_grid

__all__ = [
    'SegmentorForExport', 'export_onnx', 'check_onnx', 'OnnxCheck',
    'trace_shape', 'check_shapes', 'choose_exporter', 'OUTPUTS', 'ORDERS',
    'EXPORTERS'
]

OUTPUTS = ('scores', 'labels')
ORDERS = ('faithful', 'fast')
EXPORTERS = ('auto', 'torchscript', 'dynamo')


class SegmentorForExport(nn.Module):
    """A segmentor's whole-image inference: image batch -> scores or labels.

    Args:
        segmentor (nn.Module): An mmseg ``EncoderDecoder`` with an ATMHead
            (or a head with the same ``forward`` output).
        output (str): ``'scores'``: per-class scores (B, K, H, W);
            ``'labels'``: their arg-max (B, H, W). Default: 'scores'.
        order (str): ``'faithful'`` (resize the masks, then combine, the
            official order) or ``'fast'`` (combine near the mask grid, then
            resize the scores); see :func:`combine`. Default: 'faithful'.
    """

    def __init__(self,
                 segmentor: nn.Module,
                 output: str = 'scores',
                 order: str = 'faithful') -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(
                f'output must be one of {OUTPUTS}, got {output!r}')
        if order not in ORDERS:
            raise ValueError(f'order must be one of {ORDERS}, got {order!r}')
        self.segmentor = segmentor
        self.output = output
        self.order = order

    def forward(self, inputs: Tensor) -> Tensor:
        """Args: inputs (Tensor): normalised images, (B, 3, H, W)."""
        head = self.segmentor.decode_head
        outputs = head.forward(self.segmentor.extract_feat(inputs))
        with memory_budget(float('inf')):
            return head.combine_outputs(
                outputs, inputs.shape[-2:], order=self.order,
                output=self.output)


def _patch(segmentor: nn.Module) -> Tuple[int, Optional[Size]]:
    """Patch size and trained image size of the backbone (ViT-like)."""
    backbone = segmentor.backbone
    patch = getattr(backbone, 'patch_size', 16)
    patch = int(patch[0] if isinstance(patch, Sequence) else patch)
    img_size = getattr(backbone, 'img_size', None)
    if isinstance(img_size, int):
        img_size = (img_size, img_size)
    return patch, (tuple(int(s) for s in img_size) if img_size else None)


def trace_shape(segmentor: nn.Module, shape: Size) -> Size:
    """The example size a ``dynamic`` export is traced at.

    Python branches in the backbone (mmseg's ``_pos_embeding``) and in
    QU (``queries``) resize the position embedding and the QU queries only
    when the patch grid differs from the trained one, and a trace records
    the branch it took. So a dynamic export is traced on a grid other than
    the trained one on both axes (``shape`` where it already is; else one
    patch more in height, two in width): the resizes are then in the graph,
    and at the trained grid they are identities.
    """
    patch, native = _patch(segmentor)
    if native is None:
        return tuple(shape)
    h, w = shape
    grid, trained = patch_grid(shape, patch), patch_grid(native, patch)
    if grid[0] == trained[0]:
        h += patch
    if grid[1] == trained[1]:
        w += 2 * patch
    return h, w


def check_shapes(segmentor: nn.Module, shape: Size,
                 dynamic: bool) -> List[Tuple[int, int, int]]:
    """(B, H, W) sizes :func:`check_onnx` runs: ``shape`` for a static
    export; for a dynamic one the traced size and another, non-square,
    with batch 2."""
    if not dynamic:
        return [(1, *shape)]
    traced = trace_shape(segmentor, shape)
    patch, _ = _patch(segmentor)
    other = tuple(shape) if tuple(shape) != traced else (
        shape[0] + patch, shape[1] + 2 * patch)
    return [(1, *traced), (2, *other)]


@contextlib.contextmanager
def _no_mha_fastpath() -> Iterator[None]:
    """``nn.MultiheadAttention`` without its fused inference kernel
    (``aten::_native_multi_head_attention`` has no ONNX export): the same
    computation in plain ops."""
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


def choose_exporter(segmentor: nn.Module, dynamic: bool,
                    exporter: str = 'auto') -> str:
    """``'torchscript'`` or ``'dynamo'`` for ``exporter='auto'``.

    A backbone with a ``check_export(dynamic, exporter)`` method
    (:class:`~mmseg_segvit.models.backbones.TimmViT`) decides itself.
    Otherwise TorchScript (``torch.onnx.export(..., dynamo=False)``, quick)
    except for a dynamic ShrunkViT: TorchScript records QU's query count (the traced
    patch grid) as a constant in ``nn.MultiheadAttention``'s reshapes, so
    that file would run at the traced size only; torch.export keeps it
    symbolic.

    Raises:
        ValueError: ``exporter='torchscript'`` for a dynamic ShrunkViT, an
            export the backbone refuses, or an unknown exporter.
    """
    if exporter not in EXPORTERS:
        raise ValueError(
            f'exporter must be one of {EXPORTERS}, got {exporter!r}')
    backbone_choice = getattr(segmentor.backbone, 'check_export', None)
    if backbone_choice is not None:  # TimmViT: what its timm model allows
        return backbone_choice(dynamic, exporter)
    shrunk = hasattr(segmentor.backbone, 'qu')
    if exporter == 'auto':
        return 'dynamo' if dynamic and shrunk else 'torchscript'
    if exporter == 'torchscript' and dynamic and shrunk:
        raise ValueError(
            'a dynamic ShrunkViT needs the dynamo exporter: torch\'s '
            'TorchScript exporter records the QU query count (the traced '
            "patch grid) as a constant in nn.MultiheadAttention's reshapes, "
            'so the file would only run at the traced size')
    return exporter


def _check_size(segmentor: nn.Module, shape: Size, dynamic: bool) -> None:
    patch, _ = _patch(segmentor)
    if dynamic and (shape[0] % patch or shape[1] % patch):
        raise ValueError(
            f'--dynamic needs an image size that is a multiple of the patch '
            f'size {patch}, got {tuple(shape)}: the padding of other sizes is '
            'computed in Python and would be baked into the graph')


def export_onnx(segmentor: nn.Module,
                path: str,
                shape: Size,
                dynamic: bool = False,
                opset: int = 17,
                output: str = 'scores',
                order: str = 'faithful',
                exporter: str = 'auto') -> SegmentorForExport:
    """Write ``segmentor``'s inference to an ONNX file.

    Args:
        segmentor (nn.Module): An mmseg ``EncoderDecoder`` with an ATMHead,
            on CPU. It is put in eval mode.
        path (str): Output ``.onnx`` file.
        shape (tuple[int, int]): Image size (H, W) of the example input.
        dynamic (bool): Batch, height and width are dynamic axes. Sizes
            must then be multiples of the patch size; the graph is traced at
            :func:`trace_shape`. Default: False (the graph takes one
            (1, 3, H, W) batch).
        opset (int): ONNX opset. Default: 17.
        output (str): ``'scores'`` (B, K, H, W) float or ``'labels'``
            (B, H, W) int64. Default: 'scores'.
        order (str): ``'faithful'`` or ``'fast'``; see :func:`combine`.
            Default: 'faithful'.
        exporter (str): ``'torchscript'``, ``'dynamo'`` (torch.export; the
            example batch is then 2, as torch.export specialises a size 1)
            or ``'auto'`` (:func:`choose_exporter`). Default: 'auto'.

    Returns:
        SegmentorForExport: The module that was exported.
    """
    shape = (int(shape[0]), int(shape[1]))
    _check_size(segmentor, shape, dynamic)
    exporter = choose_exporter(segmentor, dynamic, exporter)
    wrapper = SegmentorForExport(segmentor, output, order).eval()
    size = trace_shape(segmentor, shape) if dynamic else shape
    if exporter == 'dynamo':
        _export_dynamo(wrapper, path, size, dynamic, opset)
        return wrapper
    example = torch.randn(1, 3, *size)
    dims = {0: 'batch', 2: 'height', 3: 'width'}
    out_dims = dims if output == 'scores' else {
        0: 'batch', 1: 'height', 2: 'width'}
    with torch.no_grad(), _no_mha_fastpath(), warnings.catch_warnings():
        # the tracer warns at every Python-side shape test; the checks at
        # two sizes (check_onnx) are what tell whether the graph generalises
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.onnx.export(
            wrapper, (example, ),
            path,
            dynamo=False,
            opset_version=opset,
            input_names=['inputs'],
            output_names=[output],
            dynamic_axes={'inputs': dims, output: out_dims}
            if dynamic else None)
    return wrapper


def _export_dynamo(wrapper: SegmentorForExport, path: str, size: Size,
                   dynamic: bool, opset: int) -> None:
    """:func:`export_onnx` with ``torch.onnx.export(..., dynamo=True)``."""
    patch, _ = _patch(wrapper.segmentor)
    example = torch.randn(2 if dynamic else 1, 3, *size)
    shapes = None
    if dynamic:  # sizes are multiples of the patch
        dim = torch.export.Dim
        shapes = {
            'inputs': {
                0: dim('batch', min=1, max=1024),
                2: patch * dim('height', min=1, max=1024),
                3: patch * dim('width', min=1, max=1024)
            }
        }
    with torch.no_grad(), _no_mha_fastpath(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(
            wrapper, (example, ),
            path,
            dynamo=True,
            opset_version=max(opset, 18),
            input_names=['inputs'],
            output_names=[wrapper.output],
            dynamic_shapes=shapes,
            external_data=False,
            verbose=False)


class OnnxCheck(NamedTuple):
    """onnxruntime against PyTorch on one random batch.

    ``max_abs_diff`` is over the scores (None for a ``labels`` export);
    ``agreement`` is the share of pixels with the same arg-max label.
    """
    shape: Tuple[int, int, int]
    max_abs_diff: Optional[float]
    agreement: float

    def passed(self, atol: float = 1e-3, min_agreement: float = 0.999) -> bool:
        return (self.max_abs_diff is None or self.max_abs_diff <= atol) \
            and self.agreement >= min_agreement


def check_onnx(path: str,
               wrapper: SegmentorForExport,
               shapes: Sequence[Tuple[int, int, int]],
               seed: int = 0) -> List[OnnxCheck]:
    """Run ``path`` with onnxruntime (CPU) and compare it with ``wrapper``.

    Args:
        path (str): The exported file.
        wrapper (SegmentorForExport): The PyTorch module it came from.
        shapes (Sequence[tuple]): (B, H, W) sizes, one random batch each.
        seed (int): Of the random batches. Default: 0.

    Returns:
        list[OnnxCheck]: One per size.
    """
    import onnxruntime as ort
    session = ort.InferenceSession(
        path, providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    generator = torch.Generator().manual_seed(seed)
    results = []
    for b, h, w in shapes:
        inputs = torch.randn(b, 3, h, w, generator=generator)
        with torch.no_grad():
            ref = wrapper(inputs)
        out = torch.from_numpy(session.run(None, {name: inputs.numpy()})[0])
        if tuple(out.shape) != tuple(ref.shape):
            raise RuntimeError(
                f'{path}: onnxruntime gives shape {tuple(out.shape)} for a '
                f'{b}x3x{h}x{w} input, PyTorch {tuple(ref.shape)}')
        if wrapper.output == 'scores':
            diff = (out - ref).abs().max().item()
            agree = (out.argmax(1) == ref.argmax(1)).float().mean().item()
        else:
            diff, agree = None, (out == ref).float().mean().item()
        results.append(OnnxCheck((b, h, w), diff, agree))
    return results
