"""Engines that run the audit beyond one process (optional extras, imported lazily).

- :mod:`ferclean.engines.dask`: the audit over Parquet shards on Dask
  (``ferclean.audit(path, engine="dask")``, CLI ``ferclean audit SHARDS/ --dask``);
- :mod:`ferclean.engines.dask_near`: its near-duplicate search, a bucket shuffle;
- :mod:`ferclean.engines.dask_clean`: cleaning Parquet shards on Dask;
- ``ferclean.engines._cluster.connect``: a local cluster or a running scheduler, for all.

Nothing here imports Dask when the package is imported; the extra is
``pip install 'ferclean[dask]'``.
"""
