"""Ours against the classical baselines: one protocol and one table per file.

:mod:`~stgconv.evaluation.video_recovery` (``stgconv eval recovery``),
:mod:`~stgconv.evaluation.voxel` (``eval super-resolution``, ``eval recovery-3d``),
:mod:`~stgconv.evaluation.classification` (``eval classification``) and
:mod:`~stgconv.evaluation.quality` (sample-quality statistics, used by ``bench/multigrid.py``).
"""
