"""Titles from a trained HLLMCreator checkpoint (the library behind ``hllm-generate``).

* :mod:`.generate`: load a checkpoint, write the title table;
* :mod:`.clustered`: per-user or cluster-and-prune generation, resumable;
* :mod:`.clustering`, :mod:`.pruning`: the user clusters, which (cluster, ad) pairs to write.
"""
