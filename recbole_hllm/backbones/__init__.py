"""The LLMs inside the models: the item, user and creative LLMs' backbones.

* :mod:`.backbone`: load one (an embedded name, a model directory or a random config),
  cut to its first layers, frozen / LoRA / fully tuned, in mixed precision;
* :mod:`.embedded`: the models shipped inside PyPI packages (SmolLM2, MiniLM), so the
  defaults work with no network;
* :mod:`.layer_split`: run a backbone's frozen lower layers once and its trained top alone;
* :mod:`.prefix_cache`: a per-row key/value prefix handed to a causal LM as a KV cache;
* :mod:`.guidance`: decoding with guidance on the user condition (own against a contrast);
* :mod:`.lora_merge`: decode with the LoRA deltas merged, the weights restored exactly after.

The chat LLMs that build training data and judge titles are another system:
:mod:`recbole_hllm.chat`.
"""
