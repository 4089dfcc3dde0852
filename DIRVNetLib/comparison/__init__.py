"""Comparing registration methods on cases with known answers: the cases, the baseline adapters,
the evaluation of one displacement, the timing runner and the report (``dirvnet benchmark``). Sits
just below the ``cli`` layer: it imports ``registration``, ``metrics``, ``io`` and ``data``; the
baselines' own packages are imported lazily by their adapters (optional extra ``benchmark``).
"""
