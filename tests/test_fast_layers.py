"""The report networks' fast settings (issue 14): exact layers, fused optimizer, bf16 recipe."""
import pytest
import torch
from torch import nn

from ferlab import devices, train
from ferlab.models import create_model
from ferlab.models.layers import Dropout, MaxPool2d, flatten
from ferlab.train.optim import make_optimizer
from ferlab.train import precision

REPORT_NETS = ["seed_cnn_a", "seed_cnn_b_pool", "seed_dnn", "seed_cnn_bn", "seed_dense_bn"]


@pytest.mark.parametrize("shape,channels_last", [((4, 3, 7, 9), False), ((4, 5, 8, 6), True), ((2, 32, 23, 23), True),
                                                  ((3, 1, 48, 48), False)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_maxpool_is_torch_s_with_and_without_gradients(shape, channels_last, dtype):
    x = (torch.randn(shape) * 2).round().to(dtype)  # rounded: many ties, which the backward must break alike
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    g = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2).to(dtype)
    results = []
    for pool in (nn.MaxPool2d(2), MaxPool2d(2)):
        with torch.no_grad():
            fast = pool(x)
        xi = x.clone().requires_grad_()
        y = pool(xi)
        y.backward(g)
        results.append((fast, y.detach(), xi.grad))
    for ref, ours in zip(results[0], results[1]):
        assert torch.equal(ref, ours)
    # the no-grad path keeps the memory format the next convolution wants
    assert results[1][0].is_contiguous(memory_format=torch.channels_last) == channels_last or shape[1] == 1


def test_maxpool_other_settings_are_torch_s():
    x = torch.randn(2, 3, 9, 9)
    for kw in (dict(kernel_size=3), dict(kernel_size=2, stride=1), dict(kernel_size=2, ceil_mode=True),
               dict(kernel_size=2, padding=1)):
        with torch.no_grad():
            assert torch.equal(MaxPool2d(**kw)(x), nn.MaxPool2d(**kw)(x)), kw


def test_dropout_drops_p_scales_the_rest_and_follows_torch_s_seed():
    # no zeros in x (randn gives a few in 5M draws), so a zero in y means a dropped element
    x = (torch.rand(64, 32, 49, 49) + 1).contiguous(memory_format=torch.channels_last).requires_grad_()
    d = Dropout(0.25)
    torch.manual_seed(3)
    y = d(x)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - 0.25) < 0.002
    assert torch.allclose(y[kept], x[kept] / 0.75)
    assert y.is_contiguous(memory_format=torch.channels_last)
    y.backward(torch.ones_like(y))
    assert torch.allclose(x.grad, kept.float() / 0.75)
    torch.manual_seed(3)
    assert torch.equal(d(x), y)  # the same seed, the same mask (resumed runs restore torch's RNG)
    assert not torch.equal(d(x), y)
    d.eval()
    assert d(x) is x
    # not a plain CPU tensor of a dense layout: torch's own dropout
    assert Dropout(0.5)(x[:, :, ::2]).shape == x[:, :, ::2].shape
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))


def test_dropout_16_bit_rates_and_input_dtype():
    # p = 0.1 is no multiple of 1/256: 16-bit draws; bf16 in, bf16 out (the mask takes x's dtype)
    x = torch.ones(64, 512, dtype=torch.bfloat16, requires_grad=True)
    torch.manual_seed(0)
    y = Dropout(0.1)(x)
    assert y.dtype == torch.bfloat16
    assert abs((y == 0).float().mean().item() - 0.1) < 0.005
    assert torch.equal(y.unique(), torch.tensor([0, 1 / 0.9], dtype=torch.bfloat16))
    for p in (0.3, 0.5, 0.75):  # 16-bit, 8-bit, 8-bit
        z = Dropout(p)(torch.ones(200_000))
        assert abs((z == 0).float().mean().item() - p) < 0.005, p


def test_flatten_keeps_the_nchw_order_and_hands_back_a_channels_last_gradient():
    x = torch.randn(4, 8, 5, 5).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = flatten(x)
    assert torch.equal(y, x.detach().contiguous().flatten(1))  # NCHW order: weights mean the same
    g = torch.randn_like(y)
    y.backward(g)
    assert x.grad.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x.grad, g.view(4, 8, 5, 5))


def test_report_cnn_is_the_function_the_report_wrote():
    # the report's order, Conv-ReLU-MaxPool, with the same weights: same logits and gradients
    torch.manual_seed(0)
    ours = create_model("seed_cnn_a").eval()
    convs = [m for m in ours.features if isinstance(m, nn.Conv2d)]
    theirs = nn.Sequential(*[layer for c in convs for layer in (c, nn.ReLU(), nn.MaxPool2d(2))])
    x = torch.randn(5, 3, 48, 48)
    a = ours.head(ours.features(x).flatten(1))
    b = ours.head(theirs(x).flatten(1))
    assert torch.allclose(a, b, atol=1e-6)
    ga = torch.autograd.grad(a.sum(), convs[0].weight)[0]
    gb = torch.autograd.grad(ours.head(theirs(x).flatten(1)).sum(), convs[0].weight)[0]
    assert torch.allclose(ga, gb, atol=1e-5)


@pytest.mark.parametrize("arch", REPORT_NETS)
def test_report_recipe_trains_report_networks_with_the_fast_settings(arch):
    cfg = train.build("report", arch=arch, data="d")
    assert cfg.amp and cfg.channels_last and cfg.optimizer == "adam" and cfg.batch_size == 64
    model = create_model(arch)
    layers = list(model.modules())
    assert not any(type(m) in (nn.Dropout, nn.MaxPool2d) for m in layers), "a slow torch layer in a report network"
    from ferlab.models.layers import Sequential

    # every BatchNorm1d, and every pool followed by a ReLU, sits in a Sequential that fuses them
    for seq in (m for m in layers if isinstance(m, nn.Sequential)):
        kinds = [type(m) for m in seq]
        if nn.BatchNorm1d in kinds or any(a is MaxPool2d and b is nn.ReLU for a, b in zip(kinds, kinds[1:])):
            assert type(seq) is Sequential, arch
    opt = make_optimizer(model, cfg)
    assert all(g["fused"] for g in opt.param_groups)
    # bfloat16 steps: autocast with convolutions; dense-only networks time bf16 arithmetic against float32
    chosen = precision.choose(model, torch.device("cpu"), cfg)
    assert chosen == "autocast" if any(isinstance(m, nn.Conv2d) for m in layers) else chosen in ("matmul", "off")


def test_report_cnns_pool_before_their_relu():
    for arch in ("seed_cnn_a", "seed_cnn_b_pool", "seed_cnn_c"):
        kinds = [type(m) for m in create_model(arch).features]
        for i, k in enumerate(kinds[:-1]):
            assert not (k is nn.ReLU and kinds[i + 1] is MaxPool2d), arch


def test_malloc_keeps_freed_memory_on_glibc(monkeypatch):
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert devices.keep_freed_memory() is True
    assert devices.keep_freed_memory() is True  # idempotent


def test_traced_graphs_keep_one_maxpool_op():
    # ONNX export traces the model: it must get a MaxPool node, not slices and Max
    with torch.no_grad():
        traced = torch.jit.trace(nn.Sequential(MaxPool2d(2)).eval(), torch.randn(1, 3, 8, 8))
    graph = str(traced.inlined_graph)
    assert "aten::max_pool2d" in graph and "aten::maximum" not in graph


def _pool_input(dtype, channels_last):
    """Rounded values (many ties), -0.0, NaN and -inf; odd sides (floor mode drops a row and a column)."""
    x = (torch.randn(3, 16, 13, 11) * 2).round().to(dtype)
    flat = x.view(-1)
    flat[::7] = -0.0
    flat[5::97] = float("nan")
    flat[6::89] = float("-inf")
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _same_bits_or_both_nan(a, b):
    return bool(((a == b) | (a.isnan() & b.isnan())).all()) and torch.equal(a.isnan(), b.isnan())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [True, False])
def test_training_pool_runs_the_compiled_kernel_and_breaks_ties_nans_and_signed_zeros_as_torch(dtype, channels_last):
    from ferlab.models import maxpool

    if not maxpool.available():
        pytest.skip("numba is not installed: training pools use torch's kernel")
    x = _pool_input(dtype, channels_last)
    g = torch.randn(3, 16, 6, 5).to(dtype)
    outs = []
    for pool in (nn.MaxPool2d(2), MaxPool2d(2)):
        xi = x.clone().requires_grad_()
        y = pool(xi)
        y.backward(g)
        outs.append((y, xi.grad))
    (y_ref, g_ref), (y, grad) = outs
    assert type(y.grad_fn).__name__ == "MaxPool2x2Backward"
    assert _same_bits_or_both_nan(y_ref.detach(), y.detach())
    assert torch.equal(g_ref, grad)  # the same element of each window gets the gradient
    assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    assert grad.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def test_training_pool_leaves_what_the_kernels_do_not_cover_to_torch():
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    assert type(MaxPool2d(2)(x.half()).grad_fn).__name__ == "MaxPool2DWithIndicesBackward0"  # float16
    assert type(MaxPool2d(2)(x[:, :, ::2, ::2]).grad_fn).__name__ != "MaxPool2x2Backward"  # a strided view


def test_training_pool_works_in_a_forked_child():
    # GNU OpenMP (numba's threads) does not survive fork(): a child must not hang, and must agree
    import multiprocessing as mp

    from ferlab.models import maxpool

    if not maxpool.available():
        pytest.skip("numba is not installed")
    x = torch.randn(2, 8, 10, 10).contiguous(memory_format=torch.channels_last).requires_grad_()
    MaxPool2d(2)(x).sum().backward()  # the parent's threads have run
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        grad = pool.apply_async(_child_pool_grad, (x.detach(),)).get(timeout=120)
    assert torch.equal(grad, x.grad)


def _child_pool_grad(x):
    x = x.clone().requires_grad_()
    MaxPool2d(2)(x).sum().backward()
    return x.grad


def test_a_numba_that_cannot_compile_leaves_training_to_torch_s_kernel(monkeypatch):
    numba = pytest.importorskip("numba")
    from ferlab.models import maxpool

    def broken_jit(*args, **kwargs):
        def wrap(fn):
            def call(*a, **k):
                raise RuntimeError("LLVM failed")
            return call
        return wrap

    monkeypatch.setattr(numba, "njit", broken_jit)
    monkeypatch.setattr(maxpool, "_kernels", {})
    with pytest.warns(RuntimeWarning, match="could not compile"):
        assert not maxpool.available()
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=torch.channels_last).requires_grad_()
    assert type(MaxPool2d(2)(x).grad_fn).__name__ == "MaxPool2DWithIndicesBackward0"


def _bn_stack(act=nn.LeakyReLU(0.01, inplace=True), momentum=0.1, drop=None):
    torch.manual_seed(0)
    layers = [nn.Linear(20, 16), nn.BatchNorm1d(16, momentum=momentum), act, *([drop] if drop else []),
              nn.Linear(16, 8)]
    with torch.no_grad():
        layers[1].weight.uniform_(0.5, 1.5)
        layers[1].bias.uniform_(-0.5, 0.5)
    return layers


def _train_twice(seq, x, g, amp=False):
    """Two training steps' outputs, input gradients, parameter gradients and buffers."""
    outs = []
    for _ in range(2):
        xi = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            y = seq(xi)
        seq.zero_grad()
        y.backward(g.to(y.dtype))
        outs.append((y.detach().float(), xi.grad.float(), [p.grad.clone() for p in seq.parameters()],
                     [b.clone().float() for b in seq.buffers()]))
    return outs


@pytest.mark.parametrize("act,momentum", [(nn.LeakyReLU(0.01, inplace=True), 0.1), (nn.ReLU(), None)])
def test_fused_batchnorm_activation_is_torch_s_in_float32(act, momentum):
    from ferlab.models import bn_act
    from ferlab.models.layers import Sequential

    if not bn_act.available():
        pytest.skip("numba is not installed: BatchNorm runs as torch's modules")
    fused, plain = Sequential(*_bn_stack(act, momentum)), nn.Sequential(*_bn_stack(act, momentum))
    assert fused.state_dict().keys() == plain.state_dict().keys()
    x, g = torch.randn(32, 20) * 3 + 1, torch.randn(32, 8)
    calls = []
    real = bn_act.run
    bn_act.run = lambda *a: calls.append(1) or real(*a)
    try:
        got = _train_twice(fused, x, g)
    finally:
        bn_act.run = real
    assert len(calls) == 2, "the fused kernels did not run"
    for (y, gx, pg, bufs), (y0, gx0, pg0, bufs0) in zip(got, _train_twice(plain, x, g)):
        assert torch.allclose(y, y0, atol=1e-5) and torch.allclose(gx, gx0, atol=1e-5)
        for a, b in zip(pg, pg0):  # the Linear's bias before a BatchNorm has a zero gradient: noise
            assert torch.allclose(a, b, atol=1e-5)
        for a, b in zip(bufs, bufs0):  # running mean and (unbiased) variance, batch count
            assert torch.allclose(a, b, atol=1e-6)


def test_fused_batchnorm_activation_under_bf16_autocast_differs_by_rounding_only():
    from ferlab.models import bn_act
    from ferlab.models.layers import Sequential

    if not bn_act.available():
        pytest.skip("numba is not installed")
    x, g = torch.randn(64, 20), torch.randn(64, 8)
    got, ref = _train_twice(Sequential(*_bn_stack()), x, g, amp=True), _train_twice(nn.Sequential(*_bn_stack()), x, g, amp=True)
    for (y, gx, pg, bufs), (y0, gx0, pg0, bufs0) in zip(got, ref):
        assert (y - y0).abs().max() <= 2 ** -6 * y0.abs().max()  # a bfloat16 rounding or two
        assert (gx - gx0).norm() <= 0.02 * gx0.norm()
        for i in (0, 2, 3, 4, 5):  # not the Linear bias before the BatchNorm (its gradient is zero up to noise)
            assert (pg[i] - pg0[i]).norm() <= 0.02 * pg0[i].norm(), i


def test_fused_dropout_keeps_one_minus_p_follows_torch_s_seed_and_is_fresh_each_step():
    from ferlab.models import bn_act
    from ferlab.models.layers import Sequential

    if not bn_act.available():
        pytest.skip("numba is not installed")
    seq = Sequential(nn.BatchNorm1d(2048), nn.ReLU(), Dropout(0.25))
    x = torch.randn(256, 2048, requires_grad=True)
    torch.manual_seed(5)
    y = seq(x)
    ref_bn = nn.BatchNorm1d(2048)
    undropped = torch.relu(ref_bn(x))
    live = undropped.detach() > 0
    kept = (y.detach() != 0) & live
    rate = kept.sum().item() / live.sum().item()
    assert abs(rate - 0.75) < 0.005
    assert torch.allclose(y[kept], undropped[kept] / 0.75, atol=1e-5)
    # neighbours are independent: P(both kept) = 0.75^2
    both = (kept[:, 1:] & kept[:, :-1]).sum().item() / (live[:, 1:] & live[:, :-1]).sum().item()
    assert abs(both - 0.5625) < 0.01
    # the backward regenerates the same mask: torch's gradient through that mask
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, g)
    (gx0,) = torch.autograd.grad(undropped * kept / 0.75, x, g)
    assert torch.allclose(gx, gx0, atol=1e-5)
    torch.manual_seed(5)
    assert torch.equal(seq(x.detach()), y.detach())  # the same seed, the same mask
    assert not torch.equal(seq(x.detach()), y.detach())  # the next step, another one


def test_fused_batchnorm_leaves_hooks_evaluation_and_other_layouts_to_the_modules(monkeypatch):
    from ferlab.models import bn_act
    from ferlab.models.layers import Sequential

    if not bn_act.available():
        pytest.skip("numba is not installed")
    seq = Sequential(*_bn_stack())
    calls = []
    monkeypatch.setattr(bn_act, "run", lambda *a: calls.append(1))
    seen = []
    handle = seq[1].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    seq(torch.randn(8, 20))
    assert seen == [(8, 16)] and not calls  # a hooked layer (explanations) runs as itself
    handle.remove()
    seq.eval()(torch.randn(8, 20))
    Sequential(nn.BatchNorm1d(16), nn.ReLU())(torch.randn(8, 16, 5))  # (N, C, L): torch's modules
    assert not calls
    monkeypatch.undo()
    y = Sequential(nn.BatchNorm1d(16), nn.ReLU(), Dropout(1.0))(torch.randn(8, 16))  # p = 1: its own module
    assert torch.equal(y, torch.zeros(8, 16))


def test_a_numba_that_cannot_compile_leaves_batchnorm_to_torch(monkeypatch):
    pytest.importorskip("numba")
    from ferlab.models import _bn_act_kernels, bn_act
    from ferlab.models.layers import Sequential

    def broken(*a):
        raise RuntimeError("LLVM failed")

    monkeypatch.setattr(_bn_act_kernels, "forward_f32", broken)
    monkeypatch.setattr(bn_act, "_kernels", [])
    with pytest.warns(RuntimeWarning, match="could not compile"):
        assert not bn_act.available()
    y = Sequential(*_bn_stack())(torch.randn(8, 20, requires_grad=True))
    assert type(y.grad_fn).__name__ == "AddmmBackward0"
    monkeypatch.setattr(bn_act, "_kernels", [])
    monkeypatch.setenv("FERLAB_BN_ACT", "torch")
    assert not bn_act.available()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [True, False])
def test_pool_then_relu_in_one_kernel_is_torch_s_bit_for_bit(dtype, channels_last):
    from ferlab.models import maxpool
    from ferlab.models.layers import Sequential

    if not maxpool.available():
        pytest.skip("numba is not installed")
    x = _pool_input(dtype, channels_last)  # also windows of negatives only, and of zeros
    g = torch.randn(3, 16, 6, 5).to(dtype)
    outs = []
    for seq in (nn.Sequential(nn.MaxPool2d(2), nn.ReLU(inplace=True)), Sequential(MaxPool2d(2), nn.ReLU(inplace=True))):
        xi = x.clone().requires_grad_()
        y = seq(xi)
        y.backward(g)
        outs.append((y, xi.grad))
    (y_ref, g_ref), (y, grad) = outs
    assert type(y.grad_fn).__name__ == "MaxPool2x2Backward"  # one node: the ReLU ran inside the pool
    assert _same_bits_or_both_nan(y_ref.detach(), y.detach())
    assert torch.equal(torch.signbit(y_ref.detach()), torch.signbit(y.detach())) or dtype == torch.bfloat16
    assert torch.equal(g_ref, grad)
    assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def test_report_cnn_trains_with_pool_and_relu_fused_and_explains_with_them_apart():
    from ferlab.models import maxpool

    if not maxpool.available():
        pytest.skip("numba is not installed")
    m = create_model("seed_cnn_a").train()
    x = torch.randn(2, 3, 48, 48)
    y = m(x)
    nodes, stack = set(), [y.grad_fn]
    while stack:
        f = stack.pop()
        if f is not None and f not in nodes:
            nodes.add(f)
            stack.extend(n for n, _ in f.next_functions)
    names = [type(f).__name__ for f in nodes]
    assert names.count("MaxPool2x2Backward") == 3 and "ReluBackward0" in names  # the head's ReLU only
    seen = []
    m.features[8].register_forward_hook(lambda mod, i, o: seen.append(o.shape))  # the last ReLU
    m(x)
    assert seen == [(2, 32, 5, 5)]  # a hook on a ReLU (activations, a user's) sees it run


def test_fast_layers_train_under_torch_compile():
    # inside a compiled graph the layers are torch's own: dynamo traced Dropout's NumPy draws into
    # uint64 ops that inductor rejects ("Promotion for uint16, uint32, uint64 types is not supported")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), MaxPool2d(2), Dropout(0.25), nn.Flatten(),
                        nn.Linear(8 * 4 * 4, 3)).train()
    x = torch.randn(4, 1, 8, 8)
    out = torch.compile(net)(x)  # inductor, as a user would (about 8 s of compiling)
    out.sum().backward()
    assert out.shape == (4, 3) and net[0].weight.grad is not None and net[0].weight.grad.abs().sum() > 0
