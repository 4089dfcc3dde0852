"""Measuring instruments: evaluation of one displacement, benchmark cases, baseline adapters, the
timing runner and the report. Sits just below the ``cli`` layer: it imports ``registration``,
``metrics``, ``io`` and ``data``; the baselines' own packages are imported lazily by their adapters
(optional extra ``benchmark``).
"""
