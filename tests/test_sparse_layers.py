"""``sparse_backward: layers`` (rho.train.sparse_layers): the layers' weight gradients over the
selected tokens only, input gradients dense; off by default; config, study schema and a short run."""

from __future__ import annotations

import copy

import pytest
import torch
from _helpers_train import base_config, final_state, make_slm_world
from torch import nn

from rho.loss import token_loss
from rho.models import build_model
from rho.study.config import Study, StudyError
from rho.train import train
from rho.train.config import ConfigError, TrainConfig
from rho.train.metrics import read_log
from rho.train.sparse_layers import SparseLayers

VOCAB = 320


def _model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("llama-smoke", vocab_size=VOCAB, seed=0).float()


def _batch(b: int = 3, t: int = 12) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, VOCAB, (b, t), generator=g)
    labels = torch.roll(ids, -1, dims=1)
    labels[:, -1] = -100
    mask = (torch.rand(b, t, generator=g) < 0.5) & (labels != -100)
    return ids, labels, mask


def _loss(model: nn.Module, ids: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    tl = token_loss(model(input_ids=ids).logits, labels)
    return (tl * mask).sum() / mask.sum()


def _layers(model: nn.Module) -> dict[str, nn.Linear]:
    head = model.get_output_embeddings()
    return {n: m for n, m in model.named_modules() if type(m) is nn.Linear and m is not head}


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_install_wraps_every_layer_linear_but_not_the_head() -> None:
    model = _model()
    sparse = SparseLayers.install(model)
    names = {n for n, m in model.named_modules() if m in sparse.layers}
    n_layers = model.config.num_hidden_layers
    assert len(names) == 7 * n_layers  # q k v o gate up down
    assert all(".layers." in n for n in names)
    assert model.get_output_embeddings() not in sparse.layers
    with pytest.raises(ValueError, match="already installed"):
        SparseLayers.install(model)


def test_all_tokens_selected_equals_dense() -> None:
    ids, labels, mask = _batch()
    dense, sparse_model = _model(), _model()
    _loss(dense, ids, labels, mask).backward()
    sparse = SparseLayers.install(sparse_model)
    loss = _loss(sparse_model, ids, labels, mask)
    with sparse.rows(torch.ones_like(mask)):
        loss.backward()
    a, b = _grads(dense), _grads(sparse_model)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)


def test_masked_weight_grads_are_selected_rows_only_and_input_grads_dense() -> None:
    ids, labels, mask = _batch()
    dense, sparse_model = _model(), _model()
    # the dense model's inputs X and upstream gradients dY at every wrapped layer
    xs: dict[str, torch.Tensor] = {}
    dys: dict[str, torch.Tensor] = {}

    def capture(name: str):
        def hook(_m, args, out):
            xs[name] = args[0].detach()
            out.register_hook(lambda g: dys.__setitem__(name, g.detach()))

        return hook

    for name, m in _layers(dense).items():
        m.register_forward_hook(capture(name))
    _loss(dense, ids, labels, mask).backward()

    sparse = SparseLayers.install(sparse_model)
    loss = _loss(sparse_model, ids, labels, mask)
    with sparse.rows(mask):
        loss.backward()
    sel = mask.reshape(-1)
    n_differs = 0
    for name, m in _layers(sparse_model).items():
        x = xs[name].reshape(-1, xs[name].shape[-1])
        dy = dys[name].reshape(-1, dys[name].shape[-1])
        want = dy[sel].t() @ x[sel]
        torch.testing.assert_close(m.weight.grad, want, rtol=1e-5, atol=1e-6, msg=name)
        dense_grad = dense.get_submodule(name).weight.grad
        n_differs += not torch.allclose(m.weight.grad, dense_grad, rtol=1e-3, atol=1e-5)
    assert n_differs > 0  # the unselected rows do carry gradient inside the layers: an approximation
    # grad_input is dense and exact, so every parameter outside the wrapped layers (embeddings,
    # norms, the head) gets exactly the dense gradient
    wrapped = {f"{n}.{p}" for n in _layers(sparse_model) for p in ("weight", "bias")}
    a, b = _grads(dense), _grads(sparse_model)
    others = [k for k in a if k not in wrapped]
    assert any("embed" in k for k in others) and any("norm" in k for k in others)
    for k in others:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-7, msg=k)


def test_function_bias_grad_and_input_grad_on_one_layer() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(5, 4)
    x = torch.randn(2, 3, 5, requires_grad=True)
    dy = torch.randn(2, 3, 4)
    mask = torch.tensor([[True, False, True], [False, False, True]])
    sparse = SparseLayers.install(nn.Sequential(layer))
    out = layer(x)
    torch.testing.assert_close(out, torch.nn.functional.linear(x, layer.weight, layer.bias))
    with sparse.rows(mask):
        out.backward(dy)
    sel = mask.reshape(-1)
    x2, dy2 = x.detach().reshape(-1, 5), dy.reshape(-1, 4)
    torch.testing.assert_close(layer.weight.grad, dy2[sel].t() @ x2[sel])
    torch.testing.assert_close(layer.bias.grad, dy2[sel].sum(0))
    torch.testing.assert_close(x.grad, dy @ layer.weight.detach())
    # a mask of the wrong size says what to do
    out = layer(x)
    with (
        sparse.rows(torch.ones(7, dtype=torch.bool)),
        pytest.raises(RuntimeError, match="sparse_backward=exact"),
    ):
        out.backward(dy)


def test_no_grad_forward_and_backward_outside_rows_are_dense() -> None:
    ids, labels, mask = _batch()
    dense, model = _model(), _model()
    SparseLayers.install(model)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, dense(input_ids=ids).logits, rtol=0, atol=0)
    _loss(dense, ids, labels, mask).backward()
    _loss(model, ids, labels, mask).backward()  # no rows(): every row counts
    a, b = _grads(dense), _grads(model)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)


def test_uninstall_restores_bit_identical_grads() -> None:
    ids, labels, mask = _batch()
    dense, model = _model(), _model()
    SparseLayers.install(model).uninstall()
    assert all("forward" not in vars(m) and m._rho_sparse_layers is None for m in _layers(model).values())
    _loss(dense, ids, labels, mask).backward()
    _loss(model, ids, labels, mask).backward()
    a, b = _grads(dense), _grads(model)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_autocast_bf16_matches_the_plain_layer() -> None:
    torch.manual_seed(0)
    ref, layer = nn.Linear(8, 6), nn.Linear(8, 6)
    layer.load_state_dict(ref.state_dict())
    sparse = SparseLayers.install(nn.Sequential(layer))
    x = torch.randn(2, 4, 8)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ya, yb = ref(xa), layer(xb)
    assert yb.dtype == ya.dtype == torch.bfloat16
    torch.testing.assert_close(yb, ya, rtol=0, atol=0)
    dy = torch.randn(2, 4, 6).to(torch.bfloat16)
    ya.backward(dy)
    with sparse.rows(torch.ones(2, 4, dtype=torch.bool)):
        yb.backward(dy)
    assert layer.weight.grad.dtype == torch.float32 and xb.grad.dtype == torch.float32
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(layer.weight.grad, ref.weight.grad, rtol=1e-2, atol=1e-2)


# ------------------------------------------------------------------ config, study, training run
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_slm_world(tmp_path_factory.mktemp("sparse_layers"))


def _slm(data, out, **kw):
    return base_config(
        data,
        **{
            "out_dir": str(out),
            "objective": "slm",
            "scores": str(data / "scores"),
            "selection": {"ratio": 0.6},
            **kw,
        },
    )


def test_bad_values_raise_a_clear_error(data, tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"sparse_backward must be one of exact, layers; got 'layer'"):
        TrainConfig.from_dict(_slm(data, tmp_path / "a", sparse_backward="layer"))
    with pytest.raises(ConfigError, match="objective=clm selects no tokens to drop"):
        TrainConfig.from_dict(base_config(data, out_dir=str(tmp_path / "b"), sparse_backward="layers"))


def test_default_is_exact_and_left_out_of_the_saved_config(data, tmp_path) -> None:
    cfg = TrainConfig.from_dict(_slm(data, tmp_path / "a"))
    assert cfg.sparse_backward == "exact" and "sparse_backward" not in cfg.to_dict()
    layers = cfg.replace(sparse_backward="layers")
    assert layers.to_dict()["sparse_backward"] == "layers"
    assert TrainConfig.from_dict(layers.to_dict()).sparse_backward == "layers"
    assert cfg.diff(layers) == {"sparse_backward": (None, "layers")}  # resuming across it is refused


def test_flag_off_installs_nothing(data, tmp_path, monkeypatch) -> None:
    def boom(_model):
        raise AssertionError("installed with sparse_backward=exact")

    monkeypatch.setattr(SparseLayers, "install", classmethod(lambda cls, m: boom(m)))
    train(_slm(data, tmp_path / "run", max_steps=2))
    train(base_config(data, out_dir=str(tmp_path / "clm"), max_steps=2))


def test_layers_run_trains_and_stays_close_to_exact(data, tmp_path) -> None:
    steps = 20
    train(_slm(data, tmp_path / "exact", max_steps=steps))
    train(_slm(data, tmp_path / "layers", max_steps=steps, sparse_backward="layers"))
    exact = read_log(tmp_path / "exact" / "log.jsonl")
    layers = read_log(tmp_path / "layers" / "log.jsonl")
    # step 1 sees the same weights: the same loss and selection; then the updates differ slightly
    assert layers[0]["loss"] == exact[0]["loss"] and layers[0]["n_selected"] == exact[0]["n_selected"]
    first, last = [r["loss"] for r in layers[:4]], [r["loss"] for r in layers[-4:]]
    assert sum(last) < sum(first) - 4 * 0.05  # it learns (exact: 5.81 -> 5.67 over these steps)
    assert all(abs(a["loss"] - b["loss"]) < 0.01 * b["loss"] for a, b in zip(layers, exact, strict=True))
    a, b = final_state(tmp_path / "exact"), final_state(tmp_path / "layers")
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert "forward" not in vars(build_model("llama-smoke", vocab_size=VOCAB))  # nothing global changed


def test_study_variant_sets_sparse_backward(tmp_path) -> None:
    study = Study.load("params.yaml")
    run = next(iter(study.params["slm_variants"]))
    assert study.train_config(run).sparse_backward == "exact"
    params = copy.deepcopy(study.params)
    params["slm_variants"][run]["sparse_backward"] = "layers"
    assert Study(params=params, root=study.root).train_config(run).sparse_backward == "layers"
    params["slm_variants"][run]["sparse_backward"] = "dense"
    with pytest.raises(StudyError, match=r"sparse_backward` must be one of exact, layers"):
        Study(params=params, root=study.root).validate()
    params = copy.deepcopy(study.params)
    clm = next(iter(params["clm_runs"]))
    params["clm_runs"][clm]["sparse_backward"] = "layers"
    with pytest.raises(StudyError, match="unknown key"):
        Study(params=params, root=study.root).validate()
