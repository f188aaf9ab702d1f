"""The answer engine: retrieve → rank sentences → answerability gate → quote or verified draft.

``AnswerPipeline`` (``pipeline.py``) runs a question; ``grounding.py`` holds the sentence
features and the small learned scorers (``grounding_model.json``); ``generator.py`` the
local GGUF model; ``verify.py`` the check a draft must pass; ``followup.py`` the subject of a
follow-up question; ``result.py`` the typed results. It depends on the store through the
``VectorStore`` port and knows nothing of HTTP.
"""

from service.answer.pipeline import AnswerPipeline
from service.answer.result import (
    AnswerEvent,
    AnswerResult,
    Citation,
    DraftToken,
    Evidence,
    final_result,
)

__all__ = ["AnswerEvent", "AnswerPipeline", "AnswerResult", "Citation", "DraftToken", "Evidence",
           "final_result"]
