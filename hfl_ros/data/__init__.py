"""Datasets: HO3D, DexYCB and synthetic scenes, all read into
:class:`~hfl_ros.data.sample.HandObjectSample`."""
