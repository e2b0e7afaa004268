"""Metrics for generated titles, selectable by name (see :mod:`.generation`)."""
from recbole_hllm.evaluation.generation import GENERATION_METRICS, GroundTruth, TitleRecord, score_titles

__all__ = ["GENERATION_METRICS", "GroundTruth", "TitleRecord", "score_titles"]
