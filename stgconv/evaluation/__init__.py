"""Ours against the classical baselines: one protocol and one table per file.

:mod:`~stgconv.evaluation.video_recovery` (``stgconv eval recovery``),
:mod:`~stgconv.evaluation.voxel` (``eval super-resolution``, ``eval recovery-3d``),
:mod:`~stgconv.evaluation.classification` (``eval classification``),
:mod:`~stgconv.evaluation.ood` (``eval ood``: a classifier model's out-of-distribution scores) and
:mod:`~stgconv.evaluation.quality` (sample-quality statistics, used by ``bench/multigrid.py``).
"""
