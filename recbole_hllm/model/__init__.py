"""The RecBole models and their parts.

* :mod:`.hllm`: HLLM (item LLM -> item embeddings -> user LLM -> next item);
* :mod:`.hllm_creator`: HLLMCreator (HLLM's user embedding U -> personalised ad titles);
* :mod:`.item_encoder`, :mod:`.user_encoder`: the two LLMs of HLLM;
* :mod:`.creative_llm`, :mod:`.user_conditioning`, :mod:`.heads`: the title writer and
  how U reaches it;
* :mod:`.losses`, :mod:`.schedule`: the losses and which of them each training step runs.
"""
