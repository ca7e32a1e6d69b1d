"""The same engine on CUDA: skipped cleanly on machines without a GPU."""

import warnings

import pytest
import torch

from stgconv.config import TrainConfig
from stgconv.energy import image_energy
from stgconv.mcmc import HMC, MALA, KnownEntries, Langevin, MultiGridSampler
from stgconv.train import MultiGridTrainer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("sampler", [Langevin(n_steps=5, step_size=0.01),
                                     MALA(n_steps=5, step_size=0.01),
                                     HMC(n_steps=2, step_size=0.01, n_leapfrog=3)])
def test_samplers_run_on_cuda_and_match_cpu_seeded_shapes(sampler, monkeypatch):
    # Bit-for-bit repeats on CUDA need cuDNN's deterministic algorithms: without them, two
    # runs of one seed differed in 2 of 3 fresh processes on an H200 (cuDNN chose differently).
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    energy = image_energy("descriptor64", in_channels=3, image_size=64).cuda()
    generator = torch.Generator("cuda").manual_seed(0)
    x0 = torch.zeros(4, 3, 64, 64, device="cuda")
    known = torch.zeros_like(x0, dtype=torch.bool)
    known[..., :8] = True
    observed = torch.full_like(x0, 0.5)
    x = sampler.run(energy, x0, constraint=KnownEntries(observed, known), generator=generator)
    assert x.device.type == "cuda" and x.shape == x0.shape
    assert torch.isfinite(x).all()
    assert torch.equal(x[known], observed[known])
    again = sampler.run(energy, x0, constraint=KnownEntries(observed, known),
                        generator=torch.Generator("cuda").manual_seed(0))
    assert torch.equal(x, again)


def test_multigrid_training_and_sampling_on_cuda():
    """The coarse-to-fine sampler and the multi-grid trainer keep every tensor on the GPU, and
    the observed pixels stay exact through the grids."""
    generator = torch.Generator("cuda").manual_seed(0)
    sizes = [(1, 1), (4, 4), (16, 16)]
    energies = [image_energy("descriptor4", in_channels=3, image_size=4, layers=[[8, 3, 1, 1]]),
                image_energy("descriptor16", in_channels=3, image_size=16, layers=[[8, 5, 2, 2]])]
    energies = [e.cuda() for e in energies]
    langevin = Langevin(n_steps=3, step_size=0.01, clamp=(-1.0, 1.0))
    data = torch.rand(6, 3, 16, 16, generator=generator, device="cuda") * 2 - 1
    trainer = MultiGridTrainer(energies, [langevin] * 2, data, sizes,
                               train=TrainConfig(batch_size=4), generator=generator)
    trainer.fit(2, progress=False)
    assert all(x.device.type == "cuda" for x in trainer.last_samples)
    known = torch.rand(6, 1, 16, 16, generator=generator, device="cuda") > 0.5
    grids = MultiGridSampler((langevin,) * 2, ((4, 4), (4, 4))).run(
        energies, trainer.base, constraint=KnownEntries(data, known), generator=generator)
    assert [tuple(g.shape[2:]) for g in grids] == sizes
    assert torch.equal(grids[-1].expand_as(data)[known.expand_as(data)],
                       data[known.expand_as(data)])


@pytest.mark.parametrize("explicit_generator", [False, True])
def test_the_cuda_graph_chain_is_the_eager_chain(explicit_generator):
    """Replaying the captured step computes what the eager loop computes, noise included, with
    a constraint, a clamp and gradient clipping in the step."""
    torch.manual_seed(0)
    energy = image_energy("descriptor64", in_channels=3, image_size=64).cuda()
    x0 = torch.rand(4, 3, 64, 64, device="cuda") * 2 - 1
    known = torch.rand(4, 1, 64, 64, device="cuda").expand_as(x0) > 0.5
    constraint = KnownEntries(torch.zeros_like(x0), known)
    runs = []
    for cuda_graph in (True, False):
        sampler = Langevin(n_steps=8, step_size=0.02, clamp=(-1.0, 1.0), grad_clip=50.0,
                           precision="fp32", cuda_graph=cuda_graph)
        if explicit_generator:
            generator = torch.Generator("cuda").manual_seed(3)
        else:
            torch.cuda.manual_seed(3)
            generator = None
        runs.append(sampler.run(energy, x0, constraint=constraint, generator=generator))
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-5, atol=1e-5)
    assert torch.equal(runs[0][known], torch.zeros_like(runs[0][known]))


def test_a_diverging_graphed_chain_names_the_same_step_as_the_eager_chain():
    """x grows by 1.5x per step from 1e10 until the energy overflows float32 (near step 41),
    well inside the replayed steps: both ways name the same step and chains."""
    from stgconv.mcmc import NonFiniteEnergyError
    from stgconv.mcmc.graphs import WARMUP_STEPS

    def energy(x):
        return -5e3 * x.flatten(1).pow(2).sum(1)

    steps = []
    for cuda_graph in (True, False):
        sampler = Langevin(n_steps=60, step_size=0.01, noise_scale=0.0, precision="fp32",
                           cuda_graph=cuda_graph)
        with pytest.raises(NonFiniteEnergyError) as error:
            sampler.run(energy, torch.full((2, 3), 1e10, device="cuda"))
        steps.append((error.value.step, error.value.chains))
    assert steps[0] == steps[1] and steps[0][0] > WARMUP_STEPS and steps[0][1] == (0, 1)


def test_auto_precision_chooses_among_the_candidates_and_returns_a_plain_tensor():
    from stgconv.mcmc.execution import FP32, Execution

    torch.manual_seed(0)
    energy = image_energy("descriptor64", in_channels=3, image_size=64).cuda()
    x0 = torch.rand(4, 3, 64, 64, device="cuda") * 2 - 1
    chosen = Langevin(n_steps=5, step_size=0.01).execution(energy, x0)
    assert chosen in (FP32, Execution(bf16=True), Execution(bf16=True, layout=torch.channels_last))
    x = Langevin(n_steps=5, step_size=0.01).run(energy, x0)
    assert x.is_contiguous() and torch.isfinite(x).all()


def test_a_kept_graph_replays_later_runs_and_sees_updated_weights():
    """The second run of a constraint-free chain replays the first run's graph: it computes
    the eager chain from its own start, with the weights as they are now."""
    from stgconv.mcmc import graphs

    torch.manual_seed(0)
    energy = image_energy("descriptor64", in_channels=3, image_size=64).cuda()
    graphed = Langevin(n_steps=6, step_size=0.02, clamp=(-1.0, 1.0), precision="fp32")
    eager = Langevin(n_steps=6, step_size=0.02, clamp=(-1.0, 1.0), precision="fp32",
                     cuda_graph=False)
    generator = torch.Generator("cuda")
    graphed.run(energy, torch.zeros(2, 3, 64, 64, device="cuda"), generator=generator)
    assert len(graphs._CAPTURED[energy]) == 1
    with torch.no_grad():
        for parameter in energy.parameters():
            parameter.mul_(3.0)  # in place, as an optimizer step
    x0 = torch.rand(2, 3, 64, 64, device="cuda") * 2 - 1
    runs = [sampler.run(energy, x0, generator=generator.manual_seed(4))
            for sampler in (graphed, eager)]
    assert len(graphs._CAPTURED[energy]) == 1  # replayed, not captured again
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs a second CUDA device")
def test_a_graphed_chain_on_a_gpu_that_is_not_current_moves():
    """Capture and replay on the chain's own device: captured on the current one (cuda:0), a
    chain on cuda:1 was an empty graph and came back as it went in."""
    torch.manual_seed(0)
    energy = image_energy("descriptor64", in_channels=3, image_size=64).to("cuda:1")
    x0 = torch.rand(2, 3, 64, 64, device="cuda:1") * 2 - 1
    runs = [Langevin(n_steps=6, step_size=0.02, precision="fp32", cuda_graph=cuda_graph).run(
                energy, x0, generator=torch.Generator("cuda:1").manual_seed(2))
            for cuda_graph in (True, False)]
    assert torch.cuda.current_device() == 0 and not torch.equal(runs[0], x0)
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-5, atol=1e-5)


def test_a_resumed_run_keeps_adams_step_counts_on_the_host(tmp_path):
    """The checkpoint is loaded onto the GPU; Adam's step counts go back to the host, where
    torch reads them at every update without a synchronisation."""
    from stgconv.mcmc import NoiseInit, NoiseStart
    from stgconv.train import Trainer

    def trainer():
        torch.manual_seed(0)
        energy = image_energy("descriptor16", in_channels=3, image_size=16,
                              layers=[[4, 5, 2, 2]]).cuda()
        return Trainer(energy, Langevin(n_steps=2, step_size=0.01, precision="fp32"),
                       NoiseStart(NoiseInit()), torch.rand(4, 3, 16, 16, device="cuda"),
                       train=TrainConfig(batch_size=2, n_iterations=3),
                       generator=torch.Generator("cuda").manual_seed(0))

    first = trainer()
    first.fit(1, progress=False)
    first.save(tmp_path / "checkpoint.pt")
    resumed = trainer()
    resumed.resume(tmp_path / "checkpoint.pt")
    steps = [moments["step"] for moments in resumed.optimizer.state.values()]
    assert steps and all(step.device.type == "cpu" for step in steps)


@pytest.mark.parametrize("kind", ["known", "block_means", "known_and_block_means"])
def test_the_cuda_graph_chain_projects_as_the_eager_chain(kind):
    """Every constraint's projection, replayed in the graph, is the eager one's: the same
    chain and the same generator state after it."""
    from stgconv.mcmc import DownsampleConsistency, KnownEntriesAndBlockMeans

    torch.manual_seed(0)
    energy = image_energy("descriptor64", in_channels=3, image_size=64).cuda()
    x0 = torch.rand(4, 3, 64, 64, device="cuda") * 2 - 1
    known = KnownEntries(x0, torch.rand(4, 1, 64, 64, device="cuda").expand_as(x0) > 0.5)
    means = DownsampleConsistency(torch.full((4, 3, 16, 16), 0.1, device="cuda"), (4, 4))
    constraint = {"known": known, "block_means": means,
                  "known_and_block_means": KnownEntriesAndBlockMeans(known, means)}[kind]
    runs = []
    for cuda_graph in (True, False):
        generator = torch.Generator("cuda").manual_seed(3)
        sampler = Langevin(n_steps=8, step_size=0.02, clamp=(-1.0, 1.0), precision="fp32",
                           cuda_graph=cuda_graph)
        runs.append((sampler.run(energy, x0, constraint=constraint, generator=generator),
                     generator.get_state()))
    (graphed, graphed_state), (eager, eager_state) = runs
    torch.testing.assert_close(graphed, eager, rtol=1e-5, atol=1e-5)
    assert torch.equal(graphed_state, eager_state)


def test_a_step_that_cannot_be_captured_runs_eagerly_with_the_same_noise():
    """An energy that reads a value back to the host cannot be captured: the chain falls back
    to the eager loop after the warm-up steps, drawing the noise the eager chain draws."""
    torch.manual_seed(0)
    net = image_energy("descriptor16", in_channels=3, image_size=16,
                       layers=[[4, 5, 2, 2]]).cuda()

    def syncing(x):
        energy = net(x)
        float(energy.detach().sum())  # a host sync, refused inside a capture
        return energy

    x0 = torch.rand(4, 3, 16, 16, device="cuda")
    runs = []
    for cuda_graph in (True, False):
        generator = torch.Generator("cuda").manual_seed(5)
        x = Langevin(n_steps=8, step_size=0.02, precision="fp32", cuda_graph=cuda_graph).run(
            syncing, x0, generator=generator)
        runs.append((x, generator.get_state()))
    torch.testing.assert_close(runs[0][0], runs[1][0], rtol=1e-5, atol=1e-5)
    assert torch.equal(runs[0][1], runs[1][1])
    # The failed capture left no generator mid-capture: both still draw eagerly (they raised
    # "Offset increment outside graph capture" when the capture was abandoned unclosed).
    torch.randn(3, device="cuda")
    torch.randn(3, device="cuda", generator=generator)
    # torch.cuda.graph's exit ends the capture before it restores the caller's stream, with no
    # try between them: a failed capture must not leave this thread on the capture's side stream.
    assert torch.cuda.current_stream() == torch.cuda.default_stream()


@pytest.mark.parametrize("written_on, resumed_on", [("cuda", "cpu"), ("cpu", "cuda")])
def test_a_run_moves_between_cpu_and_gpu_with_a_warning(tmp_path, written_on, resumed_on):
    from stgconv.mcmc import NoiseInit, NoiseStart
    from stgconv.train import Trainer

    def trainer(device):
        torch.manual_seed(0)
        energy = image_energy("descriptor16", in_channels=3, image_size=16,
                              layers=[[4, 5, 2, 2]]).to(device)
        return Trainer(energy, Langevin(n_steps=2, step_size=0.01, precision="fp32"),
                       NoiseStart(NoiseInit()), torch.rand(4, 3, 16, 16, device=device),
                       train=TrainConfig(batch_size=2, n_iterations=3),
                       generator=torch.Generator(device).manual_seed(0))

    first = trainer(written_on)
    first.fit(1, progress=False)
    first.save(tmp_path / "checkpoint.pt")
    resumed = trainer(resumed_on)
    with pytest.warns(UserWarning, match="another kind of generator's"):
        resumed.resume(tmp_path / "checkpoint.pt")
    resumed.fit(2, progress=False)
    assert resumed.iteration == 2


def test_linear_read_out_is_fitted_on_the_features_device():
    """eval classification fits its classifiers where the model runs: on CUDA features the
    fit, the folds and the predictions stay on the GPU (an nn.Linear made on the CPU failed)."""
    from stgconv.evaluation.classification import cross_validate, fit_logistic

    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 2
    features = (torch.randn(40, 6, generator=generator) + 3 * labels[:, None]).cuda()
    assert fit_logistic(features, labels.cuda(), 2).weight.device.type == "cuda"
    assert cross_validate(features, labels.cuda(), folds=4)["accuracy"] == 1.0


def test_auroc_and_calibration_error_take_scores_from_the_gpu():
    """A model on the GPU scores there: the metrics accept its tensors and measure what they
    measure on the CPU (their bookkeeping tensors were made on the CPU)."""
    from stgconv.metrics import auroc, expected_calibration_error

    generator = torch.Generator().manual_seed(0)
    inliers = torch.randn(50, generator=generator) + 1
    outliers = torch.randn(40, generator=generator)
    probabilities = torch.softmax(torch.randn(30, 4, generator=generator), 1)
    labels = torch.randint(0, 4, (30,), generator=generator)
    assert auroc(inliers.cuda(), outliers.cuda()) == auroc(inliers, outliers)
    assert (expected_calibration_error(probabilities.cuda(), labels.cuda())
            == expected_calibration_error(probabilities, labels))


def test_a_gaussian_fitted_on_the_gpu_is_the_cpu_fit_without_warnings():
    """The fit's SVD runs on the CPU (cuSOLVER's default driver did not converge on MNIST's
    classes and warned); the parameters come back on the data's device."""
    from stgconv.mcmc.init import DataGaussian

    data = torch.rand(300, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(300) % 3
    on_cpu = DataGaussian.fit(data, labels, rank=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        on_gpu = DataGaussian.fit(data.cuda(), labels.cuda(), rank=16)
    for name, value in on_gpu.state_dict().items():
        assert value.device.type == "cuda", name
        reference = on_cpu.state_dict()[name]
        if name == "factors":  # each direction's sign is the SVD's choice
            value, reference = value.abs(), reference.abs()
        torch.testing.assert_close(value.cpu(), reference, rtol=1e-4, atol=1e-5)


def cuda_syncs(run) -> int:
    """How many times ``run()`` made the host wait for the GPU's queue (torch's sync debug
    mode warns at each: ``.item()``, ``nonzero``, a copy from the host, ...)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing" in str(warning.message) for warning in caught)


def test_cuda_syncs_sees_a_value_read_back():
    assert cuda_syncs(lambda: torch.ones(2, device="cuda").sum().item()) >= 1


def test_a_chain_of_one_class_given_as_an_int_is_captured_and_never_waits(monkeypatch):
    """The class was copied to the GPU at every step: a wait for the queue each time, and a
    step no CUDA graph could hold (the chain fell back to eager steps after a failed capture)."""
    from stgconv.energy.classifier import classifier_energy
    from stgconv.mcmc import graphs

    torch.manual_seed(0)
    energy = classifier_energy("digit_classifier", n_classes=3).cuda()
    x0 = torch.rand(2, 1, 28, 28, device="cuda")
    energy.class_energy(x0, 2)  # lazy initialisation (cuDNN, cuBLAS) before the count
    assert cuda_syncs(lambda: energy.class_energy(x0, 2)) == 0

    def failed(*args):
        raise AssertionError("the step could not be captured")

    monkeypatch.setattr(graphs, "_close_failed_capture", failed)
    runs = [Langevin(n_steps=6, step_size=0.01, precision="fp32", cuda_graph=cuda_graph).run(
                energy.conditional(2), x0, generator=torch.Generator("cuda").manual_seed(1))
            for cuda_graph in (True, False)]
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-5, atol=1e-5)


def test_more_initializer_steps_make_the_host_wait_no_more():
    """The mirror's draw, the crops' corners and each loss's check were read back at every
    initializer step (15 an iteration by default); now the losses are read once a step."""
    from stgconv.config import InitializerConfig
    from stgconv.energy.base import ConvNetEnergy
    from stgconv.initializer import Initializer, InitializerTrainer

    def syncs(steps: int) -> int:
        torch.manual_seed(0)
        data = (torch.rand(8, 1, 8, 8, 8, device="cuda") < 0.4).float()
        energy = ConvNetEnergy(spatial_dims=3, in_channels=1, layers=[[4, 3, 1, 1]],
                               head="sum", input_size=(8, 8, 8), reference_sigma=0.5).cuda()
        settings = InitializerConfig(factors=(2,), width=4, depth=2, steps=steps, batch_size=4,
                                     lr=0.01, crop=2, mirror=True)
        trainer = InitializerTrainer(
            energy, Initializer([2], width=4, depth=2).cuda(),
            Langevin(n_steps=2, step_size=0.1, precision="fp32"), data, settings=settings,
            factor=2, train=TrainConfig(batch_size=4), generator=torch.Generator("cuda"))
        trainer.step()  # lazy initialisation before the count
        return cuda_syncs(trainer.step)

    assert syncs(3) == syncs(1)


def test_the_learned_fill_reads_nothing_back_per_crop():
    """Each crop scanned its pattern's hidden entries on the GPU and read one back (two waits
    a crop); now the crops' centres are found once, on the CPU."""
    from stgconv.baselines.video import FILLS
    from stgconv.config import LearnedFillConfig
    from stgconv.data.masks import salt_and_pepper
    from stgconv.learned_fill import learned_fill

    torch.manual_seed(0)
    video = torch.rand(3, 8, 16, 16, device="cuda") * 2 - 1
    known = salt_and_pepper(8, 16, 16, fraction=0.5,
                            generator=torch.Generator().manual_seed(0)).cuda()

    def syncs(iterations: int) -> int:
        settings = LearnedFillConfig(iterations=iterations, crop_frames=4, crop_size=8,
                                     patterns=2, batch=8, symmetric=False)
        return cuda_syncs(lambda: learned_fill(
            video, known, [FILLS["temporal_interpolation"]], settings=settings,
            generator=torch.Generator().manual_seed(0)))

    syncs(1)  # lazy initialisation before the counts
    assert syncs(5) - syncs(1) < 4 * 8  # fewer than one per crop of the 4 iterations more


def test_known_entries_on_two_devices_are_refused_naming_both() -> None:
    """A mask left on the CPU beside observed values on the GPU: named, not torch's own
    device error at the first projection."""
    observed = torch.zeros(1, 4, device="cuda")
    with pytest.raises(ValueError, match="known is on cpu, observed on cuda:0: make both on the "
                                         "chains' device"):
        KnownEntries(observed, torch.ones(1, 4, dtype=torch.bool))
