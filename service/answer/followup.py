"""Follow-up questions of a conversation: which earlier turn gives a question its subject."""

from __future__ import annotations

from collections.abc import Sequence

from service.answer.grounding import tokens
from service.answer.verify import STOPWORDS

# Words that point back to an earlier turn ("When was *it* founded?").
_REFERRING = frozenset(
    "it its itself they them their theirs themselves he him his she her hers this these those"
    .split())
# Conversational verbs that carry no topic ("Tell me about Kestrel").
_CHAT_WORDS = frozenset("tell explain describe summarize summarise know please give show "
                        "say talk let".split())
_NOT_TOPIC = STOPWORDS | _CHAT_WORDS
MAX_CONTEXT_TERMS = 8


def topic_terms(turn: str) -> list[str]:
    """The words of an earlier turn that name its topic: its names and numbers (capitalised
    words, words with digits) when it has any, else its content words; in order, once."""
    words = [w for w in tokens(turn) if w.lower() not in _NOT_TOPIC]
    names = [w for w in words if w[:1].isupper() or any(c.isdigit() for c in w)]
    return list(dict.fromkeys(names or words))[:MAX_CONTEXT_TERMS]


def refers_back(question: str) -> bool:
    return any(w.lower() in _REFERRING for w in tokens(question))


def follow_up_questions(question: str, history: Sequence[str]) -> list[str]:
    """The questions to ground, in order, until one is answered.

    Without earlier turns: the question. A question that points back ("it", "they", "this"…)
    is asked with the topic of the latest earlier turn that does not itself point back
    (``When was it founded? (Kestrel Corp)``): the names find the right passages, the
    question's own words still choose the sentence. A question that stands alone is asked
    as it is first, and with that topic only if it is not found — so a change of subject is
    not dragged back to the previous one.
    """
    earlier = [t for t in history if t.strip()]
    if not earlier:
        return [question]
    topic_turn = next((t for t in reversed(earlier) if not refers_back(t)), earlier[-1])
    terms = [t for t in topic_terms(topic_turn) if t.lower() not in question.lower()]
    if not terms:
        return [question]
    with_topic = f"{question.rstrip()} ({' '.join(terms)})"
    return [with_topic] if refers_back(question) else [question, with_topic]
