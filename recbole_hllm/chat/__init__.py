"""Chat LLMs for building training data and judging titles; the models never use them.

* :mod:`.backend`: the one interface (requests in, replies out, counted);
* :mod:`.local`: an in-process Hugging Face backend, batched, with
  :mod:`.constrained` JSON-schema decoding;
* :mod:`.openai_client`: any OpenAI-compatible endpoint (retries, backoff, concurrency);
* :mod:`.openai_server`: an OpenAI-compatible server in front of any backend (``hllm-serve``);
* :mod:`.factory`: a backend from command-line options; :mod:`.json_text`: one JSON
  object found in model text.
"""
