"""The lecture table as data: the claims with their quotes (:mod:`.quotes`) and the rows that
test them (:mod:`.rows`: arms, tuned knobs, budget, regime)."""
