"""Data for the models: RecBole datasets, the .creative file, and checks of what a user gives.

* :mod:`.dataset`, :mod:`.creative_dataset`: HLLM's and HLLMCreator's RecBole datasets;
* :mod:`.creative`: the .creative reader; :mod:`.token_rows`: per-row token tables;
* :mod:`.item_text`: item texts aligned with RecBole's ids; :mod:`.atomic_files`:
  structure checks of atomic files; :mod:`.keywords`: the one keyword matcher;
* :mod:`.synthetic_ads`: the seeded generator of the shipped ``ads-synth`` dataset.
"""
