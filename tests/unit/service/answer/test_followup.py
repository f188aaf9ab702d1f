"""Follow-up questions asked with the topic of the turn they point back to."""

from service.answer.followup import follow_up_questions


def test_follow_ups_carry_the_topic_of_the_turn_they_point_back_to() -> None:
    assert follow_up_questions("When was it founded?", []) == ["When was it founded?"]
    assert follow_up_questions("When was it founded?", ["Tell me about Kestrel Corp"]) == [
        "When was it founded? (Kestrel Corp)"]
    # a second follow-up still finds the topic two turns back
    assert follow_up_questions("Who founded it?", ["Tell me about Kestrel Corp",
                                                   "When was it founded?"]) == [
        "Who founded it? (Kestrel Corp)"]
    # a question that stands alone is asked as it is first (a change of subject stays one)
    assert follow_up_questions("What does the canteen serve?", ["Tell me about Kestrel Corp"]) \
        == ["What does the canteen serve?", "What does the canteen serve? (Kestrel Corp)"]
