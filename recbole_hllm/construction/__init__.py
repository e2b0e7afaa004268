"""Chain-of-thought construction of personalised ad titles (``hllm-build-creatives``)."""
