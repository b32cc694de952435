"""Per-layer Hessian traces by Hutchinson's estimator.

For a Rademacher vector v (entries ±1), E[vᵀHv] = Tr(H); restricted to the block of layer l,
E[v_lᵀ(Hv)_l] = Tr(H_ll). One Hessian-vector product over all selected parameters therefore gives an unbiased
sample of *every* layer's trace at once. :func:`hessian_traces` draws such samples (several vectors per autograd
call, vectorized with ``torch.func.vmap``), cycles over the batches it is given (so the estimate is of the
Hessian of the loss averaged over those batches), and reports for every layer the sample mean, its standard
error and the sample count. Unlike PyHessian it uses an explicit seeded ``torch.Generator`` (never the global
RNG), never changes the caller's model (mode, ``requires_grad``, ``.grad``, parameter values) and returns
estimates with their errors rather than raw samples.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from hao.errors import ConfigError, HaoError

__all__ = ["LayerTrace", "HessianTraces", "hessian_traces", "weight_layers", "preserve_model_state",
           "METHODS"]

METHODS = ("double_backward", "forward_over_reverse", "ggn")
#: most output elements (batch x classes) the generic (non cross-entropy) ``ggn`` path factorizes at once
GGN_MAX_OUTPUTS = 4096


@dataclass(frozen=True)
class LayerTrace:
    """Hutchinson estimate of one layer's Hessian-block trace Tr(H_ll).

    ``mean`` ± ``std_error`` (standard error of the mean over ``samples`` Rademacher samples); ``numel`` is the
    layer's parameter count n_l, so ``per_param = mean / numel`` is the average curvature Tr(H_l)/n_l.
    """

    path: str
    mean: float
    std_error: float
    samples: int
    numel: int

    @property
    def per_param(self) -> float:
        return self.mean / self.numel

    @property
    def per_param_se(self) -> float:
        return self.std_error / self.numel

    @property
    def rel_error(self) -> float:
        return self.std_error / abs(self.mean) if self.mean != 0 else math.inf


@dataclass(frozen=True)
class HessianTraces:
    """Per-layer trace estimates keyed by module path (or parameter name), plus the whole selected block.

    ``total``/``total_se``: the estimate of Σ_l Tr(H_ll) and its standard error (computed from the per-sample
    totals, so correlations between layers are accounted for). ``info`` records how the estimate was made
    (seed, tol, batches, method, wall time, converged). JSON round-trip: :meth:`to_json` / :meth:`from_json`.
    """

    layers: tuple[LayerTrace, ...]
    total: float
    total_se: float
    samples: int
    info: Mapping[str, Any] = field(default_factory=dict)
    #: traces of the Hessian w.r.t. each layer's *input activation* (``activations=True``, method ``"ggn"``):
    #: ``mean`` is the trace for the batch-mean loss (= the mean over samples of the per-sample trace) and
    #: ``numel`` the activation's elements per sample, so a per-element quantization noise of mean square e
    #: raises the loss by about ½·mean·e.
    activations: tuple[LayerTrace, ...] = ()

    def __getitem__(self, path: str) -> LayerTrace:
        for lt in self.layers:
            if lt.path == path:
                return lt
        raise KeyError(f"No trace for layer {path!r}; layers are {[lt.path for lt in self.layers][:8]}"
                       f"{'...' if len(self.layers) > 8 else ''}.")

    def __contains__(self, path: object) -> bool:
        return any(lt.path == path for lt in self.layers)

    def __iter__(self) -> Iterator[LayerTrace]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(lt.path for lt in self.layers)

    def as_dict(self) -> dict[str, LayerTrace]:
        return {lt.path: lt for lt in self.layers}

    def to_dict(self) -> dict[str, Any]:
        d = {"layers": [asdict(lt) for lt in self.layers], "total": self.total, "total_se": self.total_se,
             "samples": self.samples, "info": dict(self.info)}
        if self.activations:
            d["activations"] = [asdict(lt) for lt in self.activations]
        return d

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "HessianTraces":
        try:
            def lts(rows: Any) -> tuple[LayerTrace, ...]:
                return tuple(LayerTrace(str(x["path"]), float(x["mean"]), float(x["std_error"]), int(x["samples"]),
                                        int(x["numel"])) for x in rows)
            return cls(lts(d["layers"]), float(d["total"]), float(d["total_se"]), int(d["samples"]),
                       dict(d.get("info", {})), lts(d.get("activations", ())))
        except (KeyError, TypeError, ValueError) as exc:
            raise HaoError(f"Malformed HessianTraces JSON ({type(exc).__name__}: {exc}); expected keys 'layers' "
                           "(list of {path, mean, std_error, samples, numel}), 'total', 'total_se', 'samples' "
                           "(optional 'activations', same rows as 'layers').")

    @classmethod
    def from_json(cls, s: str | bytes) -> "HessianTraces":
        try:
            d = json.loads(s)
        except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as exc:
            raise HaoError(f"HessianTraces JSON is not valid JSON ({exc}).") from None
        return cls.from_dict(d)


# ---- model handling ------------------------------------------------------------------------------------------
def weight_layers(model: nn.Module) -> dict[str, str]:
    """``{module path: parameter name}`` of every module owning a ``weight`` parameter with >= 2 dims
    (convolutions, linear layers, elastic convolutions); BatchNorm affine weights and biases are excluded."""
    out = {}
    for name, m in model.named_modules():
        w = m._parameters.get("weight") if hasattr(m, "_parameters") else None
        if isinstance(w, torch.Tensor) and w.dim() >= 2:
            out[name] = f"{name}.weight" if name else "weight"
    return out


@contextlib.contextmanager
def preserve_model_state(model: nn.Module) -> Iterator[None]:
    """Restore every module's ``training`` flag and every parameter's ``requires_grad`` and ``.grad`` on exit."""
    modes = [(m, m.training) for m in model.modules()]
    params = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    try:
        yield
    finally:
        for m, t in modes:
            m.training = t
        for p, rg, g in params:
            p.requires_grad_(rg)
            p.grad = g


def _as_batches(data: Any) -> list[tuple[Any, Any]]:
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return [data]
    try:
        batches = list(data)
    except TypeError:
        raise ConfigError(f"data must be an (inputs, targets) tuple or an iterable of such batches, got "
                          f"{type(data).__name__}.") from None
    for i, b in enumerate(batches):
        if not isinstance(b, (tuple, list)) or len(b) != 2:
            raise ConfigError(f"data batch {i} must be an (inputs, targets) pair, got {type(b).__name__}"
                              f"{' of length ' + str(len(b)) if isinstance(b, (tuple, list)) else ''}.")
    if not batches:
        raise ConfigError("data is empty: pass an (inputs, targets) tuple or a non-empty iterable of batches.")
    return batches


def _rademacher(shapes: Sequence[torch.Size], k: int, gen: torch.Generator, dtype: torch.dtype,
                device: torch.device) -> list[torch.Tensor]:
    """k Rademacher vectors, drawn vector by vector (so a seed gives the same vectors whatever the chunking)."""
    sizes = [int(torch.Size(s).numel()) for s in shapes]
    flat = torch.stack([torch.randint(0, 2, (sum(sizes),), generator=gen, dtype=torch.int8) for _ in range(k)])
    flat = flat.to(device=device, dtype=dtype).mul_(2).sub_(1)
    return [c.reshape(k, *s) for c, s in zip(flat.split(sizes, dim=1), shapes)]


def _bind(obj: Any, model: nn.Module, loss_fn: Callable, names: list[str]) -> None:
    """Shared set-up of the samplers: detached primals of the selected parameters, the rest of the state."""
    from torch.func import functional_call
    obj.model, obj.loss_fn, obj.names, obj._call = model, loss_fn, names, functional_call
    named = dict(model.named_parameters())
    named.update(dict(model.named_buffers()))
    obj.primals = [named[n].detach() for n in names]
    obj.rest = {n: t.detach() for n, t in named.items() if n not in set(names)}


class _HVP:
    """Batched Hessian-vector products of ``loss_fn(model(x), y)`` w.r.t. the selected parameters."""

    def __init__(self, model: nn.Module, loss_fn: Callable, names: list[str], method: str) -> None:
        _bind(self, model, loss_fn, names)
        self.method = method
        self._graph: tuple | None = None

    def _loss(self, ws: Sequence[torch.Tensor], x: Any, y: Any) -> torch.Tensor:
        out = self._call(self.model, {**self.rest, **dict(zip(self.names, ws))}, (x,))
        loss = self.loss_fn(out, y)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise ConfigError(f"loss_fn must return a scalar tensor, got {type(loss).__name__}"
                              f"{' of shape ' + str(tuple(loss.shape)) if isinstance(loss, torch.Tensor) else ''}.")
        return loss

    def set_batch(self, x: Any, y: Any) -> None:
        self.x, self.y = x, y
        self._graph = None

    def __call__(self, vs: list[torch.Tensor]) -> list[torch.Tensor]:
        """``vs[i]`` has shape (k, *param_i.shape); returns the k Hessian-vector products, same shapes."""
        if self.method == "double_backward":
            if self._graph is None:
                with torch.enable_grad():
                    leaves = [p.clone().requires_grad_(True) for p in self.primals]
                    g = torch.autograd.grad(self._loss(leaves, self.x, self.y), leaves, create_graph=True)
                self._graph = (leaves, g)
            leaves, g = self._graph
            if vs[0].shape[0] == 1:
                hv = torch.autograd.grad(g, leaves, grad_outputs=[v[0] for v in vs], retain_graph=True)
                return [h.unsqueeze(0) for h in hv]
            return list(torch.autograd.grad(g, leaves, grad_outputs=vs, retain_graph=True, is_grads_batched=True))
        from torch.func import grad, jvp, vmap
        x, y = self.x, self.y
        gfun = grad(lambda *ws: self._loss(ws, x, y), argnums=tuple(range(len(self.primals))))
        prim = tuple(self.primals)

        def one(*v: torch.Tensor) -> tuple:
            return jvp(gfun, prim, v)[1]

        return list(vmap(one)(*vs))


def _is_plain_cross_entropy(loss_fn: Callable) -> bool:
    """``F.cross_entropy`` or a default ``nn.CrossEntropyLoss()`` (mean reduction, no weights/smoothing)."""
    import torch.nn.functional as F

    if loss_fn is F.cross_entropy:
        return True
    return (isinstance(loss_fn, nn.CrossEntropyLoss) and loss_fn.reduction == "mean" and loss_fn.weight is None
            and loss_fn.label_smoothing == 0.0)


class _GGN:
    """Samples of Tr(J_lᵀ A J_l) per layer from ordinary backward passes (no second-order autograd).

    A = ∇²_out loss (for cross-entropy, blockdiag(diag p_n − p_n p_nᵀ)/N) = S Sᵀ. With u Rademacher in output
    space, g = Jᵀ S u is one backward pass of ``grad_outputs = S u`` and E[‖g_l‖²] = Tr(J_lᵀ A J_l), the
    layer's block of the generalized Gauss-Newton matrix. For networks that are piecewise linear between the
    layer and the loss (ReLU/ReLU6, max/avg pooling, eval-mode BatchNorm, residual adds, linear layers) the
    second-order term vanishes almost everywhere and this *is* Tr(H_ll) — for the weights and for each
    layer's input activation, all from the same backward pass.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable, names: list[str], act_paths: list[str]) -> None:
        _bind(self, model, loss_fn, names)
        self.act_paths = act_paths
        self.ce = _is_plain_cross_entropy(loss_fn)
        self._acts: dict[str, list[torch.Tensor]] = {}
        mods = dict(model.named_modules())
        self._hooks = [mods[p].register_forward_pre_hook(self._capture(p)) for p in act_paths]

    def _capture(self, path: str) -> Callable:
        def hook(module: nn.Module, args: tuple) -> tuple | None:
            if not self._recording or not args or not isinstance(args[0], torch.Tensor):
                return None
            x = args[0]
            # a private copy in the graph: its gradient flows through this layer only (not a residual branch)
            a = x.view_as(x) if x.requires_grad else x.detach().requires_grad_(True)
            self._acts.setdefault(path, []).append(a)
            return (a,) + tuple(args[1:])
        return hook

    _recording = False

    def close(self) -> None:
        for h in self._hooks:
            h.remove()

    def set_batch(self, x: Any, y: Any) -> None:
        self._acts = {}
        with torch.enable_grad():
            self.leaves = [p.clone().requires_grad_(True) for p in self.primals]
            self._recording = True
            try:
                out = self._call(self.model, {**self.rest, **dict(zip(self.names, self.leaves))}, (x,))
            finally:
                self._recording = False
        if not isinstance(out, torch.Tensor):
            raise ConfigError(f"method='ggn' needs the model to return one tensor, got {type(out).__name__}; "
                              "use method='double_backward'.")
        twice = [p for p, v in self._acts.items() if len(v) != 1]
        if twice:
            raise ConfigError(f"Layers {twice[:4]} ran {[len(self._acts[p]) for p in twice[:4]]} times in one "
                              "forward pass; activation traces need each layer called once (pass "
                              "activations=False, or give a model without weight-tied layers).")
        lack = [p for p in self.act_paths if p not in self._acts]
        if lack:
            raise ConfigError(f"Layers {lack[:4]} did not run in the forward pass (inactive in this model?); "
                              "activation traces need every selected layer to run.")
        self.out = out
        o = out.detach()
        if self.ce:
            if o.dim() != 2:
                raise ConfigError(f"cross-entropy GGN expects (batch, classes) logits, got shape {tuple(o.shape)}.")
            self.p = torch.softmax(o.double(), dim=1)
            self.sqrt_p = self.p.sqrt()
            self.S = None
        else:
            m = o.numel()
            if m > GGN_MAX_OUTPUTS:
                raise ConfigError(f"method='ggn' with a generic loss factorizes the output Hessian of {m} outputs "
                                  f"(batch x outputs); at most {GGN_MAX_OUTPUTS} are allowed. Use smaller "
                                  "batches, F.cross_entropy, or method='double_backward'.")
            from torch.func import hessian
            yy = y

            def f(z: torch.Tensor) -> torch.Tensor:
                loss = self.loss_fn(z, yy)
                if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
                    raise ConfigError("loss_fn must return a scalar tensor.")
                return loss

            H = hessian(f)(o.double()).reshape(m, m)
            lam, Q = torch.linalg.eigh(0.5 * (H + H.T))
            # negative output curvature (non-convex loss) is dropped: that is the GGN, the PSD part
            self.S = Q * lam.clamp_min(0).sqrt()

    def __call__(self, k: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """k samples: (k, n_layers) weight-block values and (k, n_acts) activation-block values."""
        o = self.out
        n = o.shape[0] if o.dim() > 0 else 1
        u = torch.randint(0, 2, (k, o.numel()), generator=gen, dtype=torch.int8).double().mul_(2).sub_(1)
        if self.ce:
            u = u.reshape(k, *o.shape)
            su = self.sqrt_p * u
            g_out = (su - self.p * su.sum(-1, keepdim=True)) / math.sqrt(n)
        else:
            g_out = (u @ self.S.T).reshape(k, *o.shape)
        g_out = g_out.to(o.dtype)
        acts = [self._acts[p][0] for p in self.act_paths]
        inputs = self.leaves + acts
        if k == 1:
            grads = [g.unsqueeze(0) for g in torch.autograd.grad(o, inputs, grad_outputs=g_out[0],
                                                                  retain_graph=True, allow_unused=True)]
        else:
            grads = list(torch.autograd.grad(o, inputs, grad_outputs=g_out, retain_graph=True,
                                             is_grads_batched=True, allow_unused=True))
        vals = [torch.zeros(k, dtype=torch.float64) if g is None else g.reshape(k, -1).double().pow(2).sum(1)
                for g in grads]
        w = torch.stack(vals[: len(self.leaves)], 1)
        a = torch.stack(vals[len(self.leaves):], 1) if acts else torch.zeros(k, 0, dtype=torch.float64)
        return w, a

    def act_numel(self) -> list[int]:
        """Elements per sample of each selected layer's input activation."""
        out = []
        for p in self.act_paths:
            a = self._acts[p][0]
            out.append(int(a[0].numel()) if a.dim() > 0 else 1)
        return out


def hessian_traces(model: nn.Module, loss_fn: Callable[[Any, Any], torch.Tensor], data: Any, *,
                   samples: int = 64, tol: float | None = None, seed: int = 0, device: str | torch.device = "cpu",
                   params: Sequence[str] | Mapping[str, str] | None = None, vectors_per_call: int = 8,
                   method: str = "double_backward", min_samples: int = 8, progress: bool = False,
                   activations: bool = False) -> HessianTraces:
    """Hutchinson estimates of the per-layer Hessian traces of ``loss_fn(model(x), y)``.

    Parameters
    ----------
    model: evaluated in eval mode (BatchNorm uses its running statistics, dropout off); the caller's model is
        left exactly as it was (every module's mode, parameters, ``requires_grad``, ``.grad``).
    loss_fn: ``loss_fn(outputs, targets) -> scalar tensor`` (mean over the batch, e.g. ``F.cross_entropy``).
    data: one ``(inputs, targets)`` batch or an iterable of batches (a loader). Samples cycle over the batches
        (``vectors_per_call`` vectors per visit), so the estimate is of the Hessian of the average loss.
    samples: maximum number of Rademacher vectors (>= 2).
    tol: stop early once every layer's relative standard error ``std_error / |mean|`` is <= tol (checked after
        each autograd call, never before ``min_samples``); ``None`` draws exactly ``samples`` vectors.
    seed: seeds a private ``torch.Generator``; the global RNG is never touched.
    device: where to compute; the model is not moved (a copy is used if ``device`` differs from its own).
    params: ``None`` = every conv/linear weight, keyed by module path (:func:`weight_layers`); a sequence of
        parameter names (keyed by those names); or a mapping ``{key: parameter name}``.
    vectors_per_call: Rademacher vectors per autograd call (batched with vmap).
    method: ``"double_backward"`` (reverse-over-reverse; the gradient graph of a batch is built once and reused
        for all its vectors), ``"forward_over_reverse"`` (``torch.func.jvp`` of ``grad``), or ``"ggn"``: the
        Gauss-Newton block trace Tr(J_lᵀ ∇²_out J_l) sampled with first-order backward passes only (a Rademacher
        vector in *output* space per sample; see :class:`_GGN`). ``ggn`` equals the Hessian trace for networks
        that are piecewise linear after each layer (ReLU/ReLU6, pooling, eval BatchNorm, residual adds — every
        hao space), is never negative, and is several times cheaper per sample; for smooth activations (tanh,
        GELU, SiLU) it is the Gauss-Newton part only.
    activations: also estimate, per selected layer, the trace of the Hessian w.r.t. the layer's *input*
        activation (``HessianTraces.activations``), from the same backward passes. Needs ``method="ggn"`` and
        the default ``params`` keyed by module path.

    Returns
    -------
    :class:`HessianTraces` with one :class:`LayerTrace` per selected layer (mean, std_error, samples, numel).
    """
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 2:
        raise ConfigError(f"samples must be an int >= 2 (the standard error needs two samples), got {samples!r}.")
    if tol is not None and not (isinstance(tol, (int, float)) and tol > 0):
        raise ConfigError(f"tol must be a positive relative standard error (e.g. 0.05) or None, got {tol!r}.")
    if not isinstance(vectors_per_call, int) or vectors_per_call < 1:
        raise ConfigError(f"vectors_per_call must be a positive int, got {vectors_per_call!r}.")
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}.")
    if activations and method != "ggn":
        raise ConfigError(f"activations=True needs method='ggn' (activation traces come from its backward "
                          f"passes), got method={method!r}.")
    if not isinstance(seed, int):
        raise ConfigError(f"seed must be an int, got {seed!r}.")
    device = torch.device(device)
    batches = _as_batches(data)

    named = dict(model.named_parameters())
    if params is None:
        keys = weight_layers(model)
    elif isinstance(params, Mapping):
        keys = dict(params)
    else:
        keys = {str(n): str(n) for n in params}
    if not keys:
        raise ConfigError("The model has no parameters to differentiate (no conv/linear weights); pass params=[...].")
    bad = [n for n in keys.values() if n not in named]
    if bad:
        raise ConfigError(f"params names {bad[:4]} are not parameters of the model; valid names look like "
                          f"{list(named)[:6]}.")
    paths, names = list(keys), list(keys.values())
    modules = dict(model.named_modules())
    act_paths: list[str] = []
    if activations:
        act_paths = [p for p in paths if p in modules]
        if len(act_paths) != len(paths):
            raise ConfigError(f"activations=True needs layers keyed by module path; "
                              f"{sorted(set(paths) - set(act_paths))[:4]} "
                              "are not modules of the model (pass params=None or a {module path: parameter} map).")

    t0 = time.perf_counter()
    with preserve_model_state(model), contextlib.ExitStack() as stack:
        work = model
        own_device = next(iter(named.values())).device
        if own_device != device:
            import copy
            work = copy.deepcopy(model).to(device)
        work.eval()
        if method == "ggn":
            hvp = _GGN(work, loss_fn, names, act_paths)
            stack.callback(hvp.close)
        else:
            hvp = _HVP(work, loss_fn, names, method)
        shapes = [p.shape for p in hvp.primals]
        dtype = hvp.primals[0].dtype
        gen = torch.Generator(device="cpu").manual_seed(seed)
        n_layers = len(paths)
        s1 = torch.zeros(n_layers, dtype=torch.float64)
        s2 = torch.zeros(n_layers, dtype=torch.float64)
        a1 = torch.zeros(len(act_paths), dtype=torch.float64)
        a2 = torch.zeros(len(act_paths), dtype=torch.float64)
        act_numel: list[int] = []
        t1 = t2 = 0.0
        n = 0
        converged = False
        bar = tqdm(total=samples, disable=not progress, desc="hutchinson", mininterval=5)
        bi = 0
        while n < samples and not converged:
            x, y = batches[bi % len(batches)]
            if bi < len(batches) or len(batches) > 1:  # one batch: its graph is built once and reused
                hvp.set_batch(x.to(device) if isinstance(x, torch.Tensor) else x,
                              y.to(device) if isinstance(y, torch.Tensor) else y)
            bi += 1
            k = min(vectors_per_call, samples - n)
            if method == "ggn":
                vals, avals = hvp(k, gen)
                a1 += avals.sum(0)
                a2 += avals.pow(2).sum(0)
                if not act_numel and act_paths:
                    act_numel = hvp.act_numel()
            else:
                vs = _rademacher(shapes, k, gen, dtype, device)
                hv = hvp(vs)
                vals = torch.stack([(v * h).reshape(k, -1).sum(1) for v, h in zip(vs, hv)], 1).double().cpu()
            s1 += vals.sum(0)
            s2 += vals.pow(2).sum(0)
            tot = vals.sum(1)
            t1 += float(tot.sum())
            t2 += float(tot.pow(2).sum())
            n += k
            bar.update(k)
            if tol is not None and n >= max(min_samples, 2):
                mean = s1 / n
                se = ((s2 / n - mean.pow(2)).clamp_min(0) * n / (n - 1) / n).sqrt()
                converged = bool((se <= tol * mean.abs()).all())
        bar.close()
        del hvp
    mean = s1 / n
    se = ((s2 / n - mean.pow(2)).clamp_min(0) * n / (n - 1) / n).sqrt()
    tm = t1 / n
    tse = math.sqrt(max(t2 / n - tm * tm, 0.0) * n / (n - 1) / n)
    layers = tuple(LayerTrace(p, float(m), float(s), n, int(torch.Size(sh).numel()))
                   for p, m, s, sh in zip(paths, mean, se, shapes))
    acts: tuple[LayerTrace, ...] = ()
    if act_paths:
        am = a1 / n
        ase = ((a2 / n - am.pow(2)).clamp_min(0) * n / (n - 1) / n).sqrt()
        acts = tuple(LayerTrace(p, float(m), float(e), n, int(c)) for p, m, e, c in zip(act_paths, am, ase, act_numel))
    info = {"seed": seed, "tol": tol, "converged": converged if tol is not None else None, "method": method,
            "vectors_per_call": vectors_per_call, "batches": len(batches), "batch_visits": bi,
            "wall_s": time.perf_counter() - t0, "threads": torch.get_num_threads(), "device": str(device)}
    return HessianTraces(layers, tm, tse, n, info, acts)
