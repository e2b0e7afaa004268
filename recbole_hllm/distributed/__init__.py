"""Multi-process training and inference on RecBole's own distributed engine.

* :mod:`.recbole_fixes`: RecBole's ``--nproc`` mode on CPU (gloo) as well as GPU (NCCL);
* :mod:`.launch`: spawns RecBole's workers with the plugin loaded, failing loudly;
* :mod:`.context`: rank / world size and the collectives the models use (identity in
  one process);
* :mod:`.fsdp`: optional FSDP sharding of a large creative LLM on GPUs.
"""
