"""Multi-process training and inference: what the models and trainers call.

* :mod:`.context`: rank / world size and the collectives the models use (identity in
  one process);
* :mod:`.fsdp`: optional FSDP sharding of a large creative LLM on GPUs.

RecBole's own ``--nproc`` engine, made to run on CPUs, and the launcher that spawns its
workers with the plugin loaded live with the rest of the RecBole integration
(:mod:`recbole_hllm.integration.distributed_fixes`, :mod:`recbole_hllm.integration.launch`).
"""
