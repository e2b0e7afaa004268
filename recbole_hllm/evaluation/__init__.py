"""Judging generated titles.

* :mod:`.generation`: the metrics by name (:mod:`.overlap`, :mod:`.personalisation`,
  :mod:`.factuality`, :mod:`.diversity`, ground truth);
* :mod:`.title_scoring`: HLLMCreator's titles written and scored at evaluation time;
  :mod:`.u_gain`: own U against another user's;
* :mod:`.judge`: the pairwise LLM judge; :mod:`.predictions`, :mod:`.report`:
  ``hllm-eval``'s input files and Markdown report.
"""
from recbole_hllm.evaluation.generation import GENERATION_METRICS, GroundTruth, TitleRecord, score_titles

__all__ = ["GENERATION_METRICS", "GroundTruth", "TitleRecord", "score_titles"]
