"""``stgconv demo``: the quick start."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from stgconv.config import load_config
from stgconv.tasks.synthesize import synthesize
from stgconv.tasks.train import ExistingRun, train


def demo(out_dir: str | Path = "outputs/demo", *, overrides: Sequence[str] = (),
         overwrite: bool = False, progress: bool = True) -> Path:
    """The quick start: learn the built-in brick texture (a real photograph shipped with
    scikit-image), then synthesize by running the model's persistent chains 5x longer.

    Persistent chains are the model's samples in the original method; fresh chains from zero
    need many more steps (``stgconv synthesize RUN --steps 100``). ``overwrite``: replace an
    earlier demo's run in ``out_dir`` (else it is refused, as by :func:`~stgconv.tasks.train`).
    """
    # os.fspath, not str(Path(...)): Path made "" the working folder, past train's refusal.
    config = load_config(None, overrides, {"out_dir": os.fspath(out_dir)})
    # Checked now: the synthesis below continues the chains a run keeps, and was refused only
    # after a whole training.
    # A multi-grid run keeps no chains either: it samples afresh from its base grid.
    sections = [name for name in ("cooperative", "multigrid")
                if getattr(config, name) is not None]
    if sections or config.chains.mode not in ("persistent", "buffer"):
        raise ValueError(
            "the demo synthesizes by continuing the chains its run keeps, which needs "
            "chains.mode persistent or buffer and no cooperative or multigrid section (got "
            f"chains.mode={config.chains.mode!r}{''.join(f', {name}' for name in sections)}); "
            "train such a model with `stgconv train` and synthesize it with --start noise")
    try:
        run = train(config, overwrite=overwrite, progress=progress)
    except ExistingRun as err:  # its advice names train's --resume, which the demo has not
        raise ExistingRun(f"{out_dir} holds an earlier run: replace it with --overwrite, or "
                          "give the demo another --out") from err
    # One texture image: the stored chains are its chains_per_example, each one sample.
    synthesize(run, run / "synthesis", n_samples=config.chains.chains_per_example, start="chains",
               n_steps=5 * config.sampler.n_steps, device=config.device)
    return run
