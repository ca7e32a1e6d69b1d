"""Config sections -> objects: the sampler of each kind (and a chain-length override), the chain
start of every ``chains.mode``, the sampler in the model's units (a voxel clamp shifted by the
training mean, an image clamp left alone), the grids and block factors of image, video and voxel
multi-grid experiments, and the device."""

from __future__ import annotations

import threading
import typing
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from stgconv.baselines.voxel import nearest_known_fill
from stgconv.build import (
    build_chain_start,
    build_sampler,
    chain_init,
    grid_samplers,
    grid_sizes,
    model_sampler,
    multigrid_bases,
    multigrid_sampler,
    seeded_weights,
    task_sampler,
)
from stgconv.checkpoint import rebuild
from stgconv.config import (
    ChainConfig,
    DataConfig,
    ExperimentConfig,
    GridConfig,
    ModelConfig,
    MultiGridConfig,
    SamplerConfig,
    UnreadSetting,
    load_config,
)
from stgconv.mcmc import HMC, MALA, Langevin, PersistentChains, ReplayBuffer
from stgconv.mcmc.starts import (
    DataStart,
    NoiseStart,
    RecoveryStart,
    SuperResolutionStart,
)
from stgconv.modalities import VOXELS
from stgconv.ops import linear_up, nearest_up

SR_CONFIG = Path(__file__).resolve().parents[1] / "configs/voxel/super_resolution_quick.yaml"


def test_build_sampler_of_each_kind_carries_its_settings() -> None:
    langevin = SamplerConfig(kind="langevin", n_steps=7, step_size=0.2, noise_scale=0.5,
                             noise_anneal="cosine", grad_clip=3.0, clamp=(-2.0, 2.0),
                             precision="bf16", cuda_graph=False)
    assert build_sampler(langevin) == Langevin(n_steps=7, step_size=0.2, noise_scale=0.5,
                                               noise_anneal="cosine", grad_clip=3.0,
                                               clamp=(-2.0, 2.0), precision="bf16",
                                               cuda_graph=False)
    assert build_sampler(SamplerConfig(kind="mala", n_steps=4, step_size=0.3)) == MALA(
        n_steps=4, step_size=0.3)
    assert build_sampler(SamplerConfig(kind="hmc", n_steps=3, step_size=0.1, n_leapfrog=9)) == HMC(
        n_steps=3, step_size=0.1, n_leapfrog=9)


def test_build_sampler_checks_a_section_built_in_python_as_a_file_is() -> None:
    """An HMC step count on a Langevin section was ignored without a word, and a step past
    the bound a config file's has ran."""
    with pytest.raises(UnreadSetting, match="sampler.n_leapfrog is 9, but applies to HMC"):
        build_sampler(SamplerConfig(n_leapfrog=9))
    with pytest.raises(ValueError, match="sampler.step_size must be at most 1000"):
        build_sampler(SamplerConfig(step_size=5000.0))


@pytest.mark.parametrize("kind", ["langevin", "mala", "hmc"])
def test_build_sampler_n_steps_overrides_the_chain_length(kind: str) -> None:
    config = SamplerConfig(kind=kind, n_steps=20, step_size=0.05)
    assert build_sampler(config).n_steps == 20
    sampler = build_sampler(config, n_steps=3)
    assert sampler.n_steps == 3 and sampler.step_size == 0.05


MODES = typing.get_args(typing.get_type_hints(ChainConfig)["mode"])


@pytest.mark.parametrize("mode", MODES)
def test_build_chain_start_for_every_mode(mode: str) -> None:
    chains = ChainConfig(mode=mode, chains_per_example=3, init="uniform", init_scale=0.5,
                         data_noise=0.1, buffer_capacity=7, buffer_fresh=0.2, factor=2,
                         missing=0.6)
    start = build_chain_start(chains, 5, spatial_dims=3)
    x_pos = torch.rand(2, 1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    x0 = start.start(x_pos, torch.arange(2), generator=torch.Generator().manual_seed(1))
    if mode == "noise":
        assert isinstance(start, NoiseStart) and start.chains_per_example == 3
        assert (start.init.kind, start.init.scale) == ("uniform", 0.5)
        assert x0.shape == (6, 1, 4, 4, 4) and x0.abs().max() <= 0.5
    elif mode == "data":
        assert isinstance(start, DataStart) and start.chains_per_example == 3
        assert start.noise_std == 0.1 and x0.shape == (6, 1, 4, 4, 4)
    elif mode == "persistent":
        assert isinstance(start, PersistentChains) and start.n_examples == 5
        assert start.chains_per_example == 3 and start.init.kind == "uniform"
    elif mode == "buffer":
        assert isinstance(start, ReplayBuffer) and start.capacity == 7 and start.fresh == 0.2
        assert start.chains_per_example == 3 and start.init.scale == 0.5
    elif mode == "super_resolution":
        assert isinstance(start, SuperResolutionStart) and start.factor == (2, 2, 2)
        assert start.upsample is linear_up  # the default of chains.upsample
        assert x0.shape == x_pos.shape
        nearest = build_chain_start(replace(chains, upsample="nearest"), 5, spatial_dims=3)
        assert nearest.upsample is nearest_up
    elif mode == "recovery":
        assert isinstance(start, RecoveryStart) and start.missing == 0.6
        assert start.fill is nearest_known_fill
        known = start.constraint(x_pos).known
        assert torch.equal(x0[known], x_pos[known]) and 0.3 < known.float().mean() < 0.5
    else:
        raise AssertionError(f"chains.mode {mode!r} has no case here: add one")


def test_super_resolution_start_needs_the_spatial_dims() -> None:
    with pytest.raises(ValueError, match="spatial_dims"):
        build_chain_start(ChainConfig(mode="super_resolution"), 4)
    assert build_chain_start(ChainConfig(mode="super_resolution", factor=4), 4,
                             spatial_dims=2).factor == (4, 4)


def test_model_sampler_shifts_a_voxel_clamp_by_the_training_mean() -> None:
    """Voxel clamps are configured in occupancy; the model sees occupancy minus the mean."""
    config = VOXELS.fit_units(load_config(SR_CONFIG), torch.full((2, 1, 4, 4, 4), 0.25))
    assert config.sampler.clamp == (0.0, 1.0)
    assert model_sampler(config).clamp == (-0.25, 0.75)
    assert model_sampler(config, n_steps=2).n_steps == 2
    other = replace(config.sampler, clamp=(0.0, 0.5), n_steps=9)
    shifted = build_sampler(replace(other, clamp=(-0.25, 0.25)))
    assert model_sampler(config, sampler=other) == shifted
    unshifted = replace(config, data=replace(config.data, mean=None))
    assert model_sampler(unshifted).clamp == (0.0, 1.0)


def test_model_sampler_leaves_an_image_clamp_alone() -> None:
    config = ExperimentConfig()
    assert config.sampler.clamp == (-1.0, 1.0)
    assert model_sampler(config) == build_sampler(config.sampler)


def image_multigrid() -> ExperimentConfig:
    return ExperimentConfig(data=DataConfig(kind="texture", size=8), multigrid=MultiGridConfig(
        base_size=1, grids=(GridConfig(size=4, sampler=SamplerConfig(n_steps=5)),
                            GridConfig(size=8))))


def video_multigrid() -> ExperimentConfig:
    """Time refined once (4 -> 8 frames), then space only."""
    st = ModelConfig(arch="st_small")
    return ExperimentConfig(data=DataConfig(kind="video", size=8, frames=8),
                            multigrid=MultiGridConfig(base_size=2, base_frames=4, grids=(
                                GridConfig(size=4, model=st), GridConfig(size=8, model=st))))


def voxel_multigrid(mean: float | None = None) -> ExperimentConfig:
    desc = ModelConfig(arch="desc32_small")
    return ExperimentConfig(data=DataConfig(kind="voxels", size=8, mean=mean),
                            sampler=SamplerConfig(clamp=(0.0, 1.0)),
                            multigrid=MultiGridConfig(base_size=2, grids=(
                                GridConfig(size=4, model=desc), GridConfig(size=8, model=desc))))


@pytest.mark.parametrize("config, sizes", [
    (image_multigrid(), [(1, 1), (4, 4), (8, 8)]),
    (video_multigrid(), [(4, 2, 2), (8, 4, 4), (8, 8, 8)]),
    (voxel_multigrid(), [(2, 2, 2), (4, 4, 4), (8, 8, 8)]),
], ids=["image", "video", "voxels"])
def test_grid_sizes_of_each_modality(config: ExperimentConfig, sizes: list) -> None:
    assert grid_sizes(config) == sizes


def test_grid_sizes_need_a_multigrid_section() -> None:
    with pytest.raises(ValueError, match="no multigrid section"):
        grid_sizes(ExperimentConfig(name="single"))


def test_multigrid_sampler_factors_and_per_grid_samplers() -> None:
    sampler = multigrid_sampler(image_multigrid())
    assert sampler.factors == ((4, 4), (2, 2))
    # Each grid's own sampler section, else the experiment's.
    assert [s.n_steps for s in sampler.samplers] == [5, 20]
    assert [s.n_steps for s in multigrid_sampler(image_multigrid(), n_steps=2).samplers] == [2, 2]
    # A trained model is used with each grid's task_steps where set (they were ignored).
    tasks = ExperimentConfig(data=DataConfig(kind="texture", size=8),
                             sampler=SamplerConfig(n_steps=20, task_steps=50),
                             multigrid=MultiGridConfig(base_size=1, grids=(
                                 GridConfig(size=4, sampler=SamplerConfig(n_steps=5,
                                                                          task_steps=7)),
                                 GridConfig(size=8))))
    assert [s.n_steps for s in multigrid_sampler(tasks).samplers] == [7, 50]
    assert [s.n_steps for s in multigrid_sampler(tasks, n_steps=3).samplers] == [3, 3]
    assert [s.n_steps for s in grid_samplers(tasks)] == [5, 20]  # training keeps its own
    assert multigrid_sampler(video_multigrid()).factors == ((2, 2, 2), (1, 2, 2))
    voxels = multigrid_sampler(voxel_multigrid(mean=0.25))
    assert voxels.factors == ((2, 2, 2), (2, 2, 2))
    assert [s.clamp for s in voxels.samplers] == [(-0.25, 0.75)] * 2  # every grid in model units
    assert not sampler.consistent
    config = image_multigrid()
    config = replace(config, multigrid=replace(config.multigrid, consistent=True))
    assert multigrid_sampler(config).consistent


def test_multigrid_bases_are_training_bases_or_new_draws_of_their_gaussian() -> None:
    """base_rank null: each start is a training example's base grid; base_rank r: draws of the
    Gaussian fitted to them, in the sampler's range (model units), matching their mean and
    copying none of them."""
    config = voxel_multigrid(mean=0.25)
    generator = torch.Generator().manual_seed(0)
    # 40 training bases of 2^3 around a common layout, in model units (occupancy - 0.25).
    layout = torch.rand(1, 1, 2, 2, 2, generator=generator) * 0.5
    base = (layout + 0.2 * torch.rand(40, 1, 2, 2, 2, generator=generator)) - 0.25
    picked = multigrid_bases(config, base, 6, generator=torch.Generator().manual_seed(1))
    assert picked.shape == (6, 1, 2, 2, 2)
    assert all((row == base).flatten(1).all(1).any() for row in picked)
    torch.manual_seed(7)  # the generator alone picks
    assert torch.equal(multigrid_bases(config, base, 6, generator=torch.Generator().manual_seed(1)),
                       picked)
    with pytest.raises(ValueError, match="multigrid_bases: generator must be"):
        multigrid_bases(config, base, 6, generator=1)  # a seed
    config = replace(config, multigrid=replace(config.multigrid, base_rank=7))
    drawn = multigrid_bases(config, base, 2000, generator=torch.Generator().manual_seed(1))
    assert drawn.shape == (2000, 1, 2, 2, 2)
    assert drawn.min() >= -0.25 and drawn.max() <= 0.75  # the clamp [0, 1] in model units
    assert not any((row == base).flatten(1).all(1).any() for row in drawn[:50])
    torch.testing.assert_close(drawn.mean(0), base.mean(0), rtol=0, atol=0.01)
    torch.manual_seed(8)  # another global stream: the generator alone decides the draws
    assert torch.equal(multigrid_bases(config, base, 2000,
                                       generator=torch.Generator().manual_seed(1)), drawn)


def test_task_sampler_takes_the_task_steps_where_set() -> None:
    config = ExperimentConfig(sampler=SamplerConfig(n_steps=20))
    assert task_sampler(config).n_steps == 20
    config = ExperimentConfig(sampler=SamplerConfig(n_steps=20, task_steps=40))
    assert task_sampler(config).n_steps == 40
    assert task_sampler(config, n_steps=3).n_steps == 3
    assert model_sampler(config).n_steps == 20  # training keeps its own chains


def test_chain_init_of_a_data_gaussian_carries_the_noise_share() -> None:
    from stgconv.mcmc import DataGaussian

    data = torch.randn(6, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    fitted = DataGaussian.fit(data, rank=1).state_dict()
    init = chain_init(ChainConfig(init="data_gaussian", init_noise=0.25, init_scale=0.5), fitted)
    assert isinstance(init, DataGaussian)
    assert (init.noise, init.noise_scale) == (0.25, 0.5)
    with pytest.raises(ValueError, match="none were given"):
        chain_init(ChainConfig(init="data_gaussian"))
    for mode in ("noise", "persistent", "buffer"):  # the starts of fresh chains take it
        assert build_chain_start(ChainConfig(mode=mode, init="data_gaussian"), 4,
                                 init=init).init is init


def test_seeded_weights_come_from_the_seed_and_leave_the_callers_stream() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    with seeded_weights(5):
        first = torch.nn.Linear(3, 2).weight.detach().clone()
    assert torch.equal(torch.get_rng_state(), before)
    torch.rand(7)  # the caller's stream moves on; the seed alone decides the weights
    with seeded_weights(5):
        assert torch.equal(torch.nn.Linear(3, 2).weight, first)
    with seeded_weights(6):
        assert not torch.equal(torch.nn.Linear(3, 2).weight, first)
    torch.manual_seed(5)  # the seed is torch's own: a library user seeding it gets these weights
    assert torch.equal(torch.nn.Linear(3, 2).weight, first)


@pytest.mark.parametrize("beside", ["seeded", "rebuilt"])
def test_seeded_weights_in_two_threads_at_once_are_each_seeds_own(beside: str) -> None:
    """A run seeded in one thread while another thread seeds its own run or loads a model (a
    thread pool's jobs): the second thread's block, opened inside the first's, seeded or drew
    from the process's one global generator between the first's seed and its draws."""
    def weights(seed: int) -> torch.Tensor:
        with seeded_weights(seed):
            return torch.nn.Linear(3, 2).weight.detach().clone()

    alone = weights(5)
    first_inside, second_inside, first_drew = (threading.Event() for _ in range(3))
    drawn: dict[str, torch.Tensor] = {}

    def first() -> None:
        with seeded_weights(5):
            first_inside.set()
            second_inside.wait(timeout=0.3)  # the second block cannot open meanwhile
            drawn["first"] = torch.nn.Linear(3, 2).weight.detach().clone()
            first_drew.set()

    def second() -> None:
        def built() -> torch.nn.Linear:
            net = torch.nn.Linear(3, 2)
            second_inside.set()
            first_drew.wait(timeout=1)
            return net

        if beside == "rebuilt":
            rebuild(built)
        else:
            with seeded_weights(6):
                drawn["second"] = built().weight.detach().clone()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    first_inside.wait()
    threads[1].start()
    for thread in threads:
        thread.join()
    assert torch.equal(drawn["first"], alone)
    if beside == "seeded":
        assert torch.equal(drawn["second"], weights(6))


def test_a_seeded_block_may_load_a_model_inside_it() -> None:
    """The blocks hold one process-wide lock; a block opened inside another in the same thread
    (a seeded run that rebuilds a saved net, a library caller's ``with seeded_weights(0):
    load_model(...)``) takes it again rather than waiting for itself for good."""
    nets: list[torch.nn.Linear] = []

    def nested() -> None:
        with seeded_weights(5):
            nets.append(rebuild(torch.nn.Linear, 3, 2))

    thread = threading.Thread(target=nested, daemon=True)  # daemon: a deadlock ends the test
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive(), "a block opened inside another waited for itself"
    with seeded_weights(5):
        assert torch.equal(nets[0].weight, torch.nn.Linear(3, 2).weight)
