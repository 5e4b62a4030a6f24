"""The yield of a string run: new, distinct strings that a character n-gram model finds plausible."""

import math

import pytest

from gibbsdream.summary import CharNGram, yield_measure


def test_the_ngram_model_is_a_distribution_over_the_next_character():
    model = CharNGram(3, 0.5).fit(["abc", "abd", "bcd"])
    for context in ("\x02\x02", "ab", "zz"):  # a seen context, and one never seen
        total = sum(math.exp(model.log_prob(context, c)) for c in "abcd\x03")
        assert total == pytest.approx(1.0)
    # counts: after "ab" the training strings continue with c once and d once, out of 2
    assert model.log_prob("ab", "c") == pytest.approx(math.log((1 + 0.5) / (2 + 0.5 * 5)))
    assert model.score("abc") > model.score("dcb")  # a seen string beats its reverse


def test_yield_counts_new_distinct_plausible_strings():
    model = CharNGram(2, 0.1).fit(["anna", "hannah", "nan", "ana"])
    records = [
        {"text": t, "in_training_data": t in {"anna", "nan"}}
        for t in ["anna", "nana", "nana", "hanna", "xqzk", "nan", ""]
    ]
    found = yield_measure(records, model, heldout=["hana", "anan", "nanna"], chain_sweeps=2000, seconds=4.0)
    # new and distinct: nana, hanna, xqzk (anna and nan are training strings; "" is no string)
    assert found["new_distinct"] == 3
    threshold = sorted(model.score(t) for t in ["hana", "anan", "nanna"])[1]
    assert found["threshold"] == pytest.approx(threshold)
    expected = sum(model.score(t) >= threshold for t in ["nana", "hanna", "xqzk"])
    assert found["yield"] == expected and model.score("xqzk") < threshold
    assert found["per_1000_chain_sweeps"] == pytest.approx(1000 * expected / 2000)
    assert found["per_second"] == pytest.approx(expected / 4.0)
