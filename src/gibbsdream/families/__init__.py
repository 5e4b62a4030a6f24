"""One module per model family: what the front ends need to know about it (building, training,
and, to come, sampling, scoring and describing it)."""
