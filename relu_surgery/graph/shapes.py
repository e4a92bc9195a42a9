"""Output shapes and MACs of every node at an example input, without computing a single value.

:func:`propagate_shapes` walks a traced graph once. The common layers (convolutions, linear layers,
norms, activations, pooling, flatten, element-wise arithmetic, ``cat``, ``view``/``reshape``) are
shape rules in Python; any other node runs on ``torch.device("meta")`` tensors (its module's
parameters swapped for meta copies for the call) under torch's own FLOP counter. The MACs of the
rules use the counter's formulas (``conv_flop_count``, ``mm_flop`` / 2), so the total equals what
:class:`torch.utils.flop_counter.FlopCounterMode` counts on a real eval-mode pass. A graph whose
values decide its shapes (``.item()``, ``nonzero``) raises :class:`ShapeError`; callers then run
a real pass (:func:`real_pass`). Neither can tell whether values are finite without computing
them: only :func:`real_pass` does.

Example:
    >>> import torch, torch.nn as nn, torch.fx as fx
    >>> gm = fx.symbolic_trace(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
    ...                                      nn.Linear(8 * 32 * 32, 10)))
    >>> result = propagate_shapes(gm, torch.zeros(1, 3, 32, 32))
    >>> result.shapes["_1"], result.output_shape, result.macs
    ((1, 8, 32, 32), (1, 10), 303104)
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn as nn
from torch.utils._pytree import tree_leaves, tree_map
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from .._compat import meta_tensors
from .activations import activation_of, submodule
from .running import eval_mode, first_tensor

__all__ = ["ShapeError", "ShapePass", "propagate_shapes", "real_pass"]


class ShapeError(RuntimeError):
    """The shapes of a graph cannot be found without real values (or a meta kernel is missing).

    Example:
        >>> class Positive(nn.Module):
        ...     def forward(self, x):
        ...         return x[x > 0]                 # how many: only the values tell
        >>> propagate_shapes(fx.symbolic_trace(Positive()), torch.ones(1, 3))
        Traceback (most recent call last):
            ...
        relu_surgery.graph.shapes.ShapeError: call_function <built-in function getitem>: NotImplementedError: ...
        >>> real_pass(fx.symbolic_trace(Positive()), torch.ones(1, 3)).output_shape
        (3,)
    """


@dataclass(frozen=True)
class ShapePass:
    """Per-node output shapes (tensor outputs, keyed by FX node name), MACs and the output shape.

    ``mode`` is ``"meta"`` (no values computed) or ``"real"``; ``finite`` is None unless real.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(4, 3), nn.ReLU()))
        >>> propagate_shapes(gm, torch.zeros(2, 4))
        ShapePass(shapes={'input_1': (2, 4), '_0': (2, 3), '_1': (2, 3), 'output': (2, 3)}, macs=24,
                  output_shape=(2, 3), mode='meta', finite=None, output=None)
    """

    shapes: dict[str, tuple[int, ...]]
    macs: int
    output_shape: tuple[int, ...]
    mode: str
    finite: bool | None = None
    output: torch.Tensor | None = None


@dataclass(frozen=True)
class _Spec:
    """A tensor known by its shape and dtype only."""

    shape: tuple[int, ...]
    dtype: torch.dtype

    def meta(self) -> torch.Tensor:
        return torch.empty(self.shape, dtype=self.dtype, device="meta")


_SAME_SHAPE_MODULES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.Dropout, nn.Dropout1d,
                       nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity, nn.LocalResponseNorm)
_SAME_SHAPE_METHODS = frozenset({"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "contiguous", "clone",
                                 "detach", "neg", "abs", "exp", "sqrt", "add_", "mul_"})
_BROADCAST = frozenset({operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd,
                        operator.imul, torch.add, torch.sub, torch.mul, torch.div})
_BROADCAST_METHODS = frozenset({"add", "sub", "mul", "div"})


def _out_len(size: int, k: int, s: int, p: int, d: int = 1, ceil: bool = False) -> int:
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


def _tuple(value, n: int) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def _conv(m: nn.modules.conv._ConvNd, x: _Spec) -> tuple[_Spec, int] | None:
    dims = len(m.kernel_size)
    if m.transposed or len(x.shape) not in (dims + 1, dims + 2):
        return None
    batch = x.shape[:-dims - 1]
    if m.padding == "same":
        spatial = x.shape[-dims:]
    else:
        pad = (0,) * dims if m.padding == "valid" else _tuple(m.padding, dims)
        spatial = tuple(_out_len(x.shape[-dims + i], m.kernel_size[i], m.stride[i], pad[i], m.dilation[i])
                        for i in range(dims))
    out = batch + (m.out_channels,) + spatial
    n = math.prod(batch)
    flops = conv_flop_count([n, *x.shape[-dims - 1:]], list(m.weight.shape), [n, m.out_channels, *spatial])
    return _Spec(out, x.dtype), flops // 2


def _pool(m: nn.Module, x: _Spec) -> _Spec | None:
    dims = int(type(m).__name__[-2])
    if len(x.shape) not in (dims + 1, dims + 2) or getattr(m, "return_indices", False):
        return None
    if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
                      nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)):
        size = _tuple(m.output_size, dims)
        spatial = tuple(x.shape[-dims + i] if size[i] is None else size[i] for i in range(dims))
    else:
        k, s = _tuple(m.kernel_size, dims), _tuple(m.stride or m.kernel_size, dims)
        p, d = _tuple(m.padding, dims), _tuple(getattr(m, "dilation", 1), dims)
        spatial = tuple(_out_len(x.shape[-dims + i], k[i], s[i], p[i], d[i], m.ceil_mode) for i in range(dims))
    return _Spec(x.shape[:-dims] + spatial, x.dtype)


_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
          nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)


def _flatten(x: _Spec, start: int = 0, end: int = -1) -> _Spec:
    n = len(x.shape)
    start, end = start % n if n else 0, end % n if n else 0
    if n == 0 or start >= end:
        return x
    return _Spec(x.shape[:start] + (math.prod(x.shape[start:end + 1]),) + x.shape[end + 1:], x.dtype)


def _module_rule(m: nn.Module, args, kwargs, node: fx.Node, gm: fx.GraphModule):
    if kwargs or len(args) != 1 or not isinstance(args[0], _Spec):
        return None
    x = args[0]
    if isinstance(m, nn.modules.conv._ConvNd):
        return _conv(m, x)
    if isinstance(m, nn.Linear) and x.shape and x.shape[-1] == m.in_features:
        return _Spec(x.shape[:-1] + (m.out_features,), x.dtype), math.prod(x.shape[:-1]) * m.in_features * m.out_features
    if isinstance(m, _SAME_SHAPE_MODULES) or activation_of(node, gm) is not None:
        return x, 0
    if isinstance(m, _POOLS):
        out = _pool(m, x)
        return None if out is None else (out, 0)
    if isinstance(m, nn.Flatten):
        return _flatten(x, m.start_dim, m.end_dim), 0
    return None


def _view(x: _Spec, dims) -> _Spec | None:
    dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list, torch.Size)) else tuple(dims)
    if not all(isinstance(d, int) for d in dims) or dims.count(-1) > 1:
        return None
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        dims = tuple(math.prod(x.shape) // known if d == -1 else d for d in dims)
    return _Spec(dims, x.dtype) if math.prod(dims) == math.prod(x.shape) else None


def _broadcast(args) -> _Spec | None:
    specs = [a for a in args if isinstance(a, _Spec)]
    if not all(isinstance(a, (_Spec, int, float)) for a in args):
        return None
    shape = tuple(torch.broadcast_shapes(*(s.shape for s in specs)))
    dtype = specs[0].dtype
    for s in specs[1:]:
        dtype = torch.promote_types(dtype, s.dtype)
    return _Spec(shape, dtype)


def _function_rule(node: fx.Node, args, kwargs, gm: fx.GraphModule) -> _Spec | None:
    fn = node.target
    if fn in _BROADCAST and not kwargs:
        return _broadcast(args)
    if fn is torch.flatten and isinstance(args[0], _Spec):
        return _flatten(*args, **kwargs)
    if fn is torch.cat and not kwargs.keys() - {"dim"} and all(isinstance(t, _Spec) for t in args[0]):
        tensors, dim = args[0], (args[1] if len(args) > 1 else kwargs.get("dim", 0))
        first = tensors[0].shape
        dim %= len(first)
        return _Spec(first[:dim] + (sum(t.shape[dim] for t in tensors),) + first[dim + 1:], tensors[0].dtype)
    if activation_of(node, gm) is not None and args and isinstance(args[0], _Spec):
        return args[0]
    return None


def _method_rule(node: fx.Node, args, kwargs):
    name, x = str(node.target), args[0]
    if not isinstance(x, _Spec):
        return None
    if name in _SAME_SHAPE_METHODS and all(isinstance(a, (_Spec, int, float)) for a in args[1:]):
        return _broadcast(args) if len(args) > 1 else x
    if name in _BROADCAST_METHODS and not kwargs:
        return _broadcast(args)
    if name == "size" and not kwargs:
        return torch.Size(x.shape) if len(args) == 1 else x.shape[args[1]]
    if name == "dim":
        return len(x.shape)
    if name == "flatten":
        return _flatten(*args, **kwargs)
    if name in ("view", "reshape") and not kwargs:
        return _view(x, args[1:])
    return None


def _to_meta(value):
    return tree_map(lambda v: v.meta() if isinstance(v, _Spec) else v, value)


def _to_spec(value):
    return tree_map(lambda v: _Spec(tuple(v.shape), v.dtype) if isinstance(v, torch.Tensor) else v, value)


def _on_meta(node: fx.Node, gm: fx.GraphModule, args, kwargs):
    """Run one node on meta tensors (the FLOP counter around the walk counts it)."""
    margs, mkwargs = _to_meta(args), _to_meta(kwargs)
    try:
        if node.op == "call_module":
            module = submodule(gm, str(node.target))
            with meta_tensors(module):
                out = module(*margs, **mkwargs)
        elif node.op == "call_function":
            out = node.target(*margs, **mkwargs)
        else:
            self_obj, *rest = margs
            out = getattr(self_obj, str(node.target))(*rest, **mkwargs)
    except Exception as exc:  # no meta kernel, or shapes that depend on values
        raise ShapeError(f"{node.op} {node.target}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    return _to_spec(out)


def _step(node: fx.Node, gm: fx.GraphModule, args, kwargs):
    """(value, MACs counted by a rule) of one node; None from a rule means: run it on meta."""
    if node.op == "call_module":
        ruled = _module_rule(submodule(gm, str(node.target)), args, kwargs, node, gm)
        if ruled is not None:
            return ruled
    elif node.op in ("call_function", "call_method"):
        if not _holds_spec((args, kwargs)):  # plain Python values (sizes, ints): compute them
            if node.op == "call_function":
                return _to_spec(node.target(*args, **kwargs)), 0
            return _to_spec(getattr(args[0], str(node.target))(*args[1:], **kwargs)), 0
        ruled = (_function_rule(node, args, kwargs, gm) if node.op == "call_function"
                 else _method_rule(node, args, kwargs))
        if ruled is not None:
            return ruled, 0
    return _on_meta(node, gm, args, kwargs), 0


def _holds_spec(value) -> bool:
    found = []
    tree_map(lambda v: found.append(v) if isinstance(v, _Spec) else v, value)
    return bool(found)


def propagate_shapes(gm: fx.GraphModule, example_input) -> ShapePass:
    """Shapes of every node, MACs and the output shape of ``gm`` at ``example_input`` (no values).

    Raises :class:`ShapeError` when a node cannot run on meta tensors. The MACs equal torch's FLOP
    counter / 2 on a real eval-mode pass.

    Example:
        >>> import torchvision
        >>> gm = fx.symbolic_trace(torchvision.models.resnet18())
        >>> propagate_shapes(gm, torch.zeros(1, 3, 224, 224)).macs
        1814073344
    """
    inputs = list(example_input) if isinstance(example_input, tuple) else [example_input]
    env: dict[fx.Node, object] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    macs, out = 0, None
    with eval_mode(gm), torch.no_grad(), FlopCounterMode(display=False) as counter:
        for node in gm.graph.nodes:
            if node.op == "placeholder":
                value = _to_spec(inputs.pop(0)) if inputs else node.args[0] if node.args else None
            elif node.op == "get_attr":
                value = _to_spec(_attr(gm, str(node.target)))
            elif node.op == "output":
                out = fx.node.map_arg(node.args[0], env.__getitem__)
                if isinstance(out, _Spec):
                    shapes[node.name] = out.shape
                break
            else:
                args = fx.node.map_arg(node.args, env.__getitem__)
                kwargs = fx.node.map_arg(node.kwargs, env.__getitem__)
                value, rule_macs = _step(node, gm, args, kwargs)
                macs += rule_macs
            env[node] = value
            if isinstance(value, _Spec):
                shapes[node.name] = value.shape
    first = _first_spec(out)
    if first is None:
        raise ShapeError("the model returned no tensor")
    return ShapePass(shapes, macs + counter.get_total_flops() // 2, first.shape, "meta")


def _attr(gm: fx.GraphModule, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _first_spec(value):
    return next((v for v in tree_leaves(value) if isinstance(v, _Spec)), None)


class _Recorder(fx.Interpreter):
    """An interpreter that records the shape of every tensor a node returns."""

    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        self.shapes: dict[str, tuple[int, ...]] = {}

    def run_node(self, n: fx.Node):
        value = super().run_node(n)
        if isinstance(value, torch.Tensor):
            self.shapes[n.name] = tuple(value.shape)
        return value


def real_pass(gm: fx.GraphModule, example_input) -> ShapePass:
    """One real eval-mode pass under torch's FLOP counter: shapes, MACs, output and its finiteness.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(4, 3)))
        >>> p = real_pass(gm, torch.zeros(2, 4))
        >>> p.macs, p.output_shape, p.finite
        (24, (2, 3), True)
    """
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    recorder = _Recorder(gm)
    with eval_mode(gm), torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = first_tensor(recorder.run(*args))
    if out is None:
        raise ShapeError("the model returned no tensor")
    return ShapePass(recorder.shapes, counter.get_total_flops() // 2, tuple(out.shape), "real",
                     bool(torch.isfinite(out).all()), out)
