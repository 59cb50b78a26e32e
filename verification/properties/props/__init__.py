"""The properties, one module per topic; :mod:`verification.properties.properties` gathers them under one name.

- :mod:`.common`: budgets and alphas, :class:`RunConfig`, :class:`Case`, :class:`NotApplicable`, the seed hash;
- :mod:`.calls`: building inputs, seeded calls, reproduction snippets, observing one call;
- :mod:`.strategies`: the Hypothesis strategies shared by the properties of one call;
- :mod:`.contract`: output contract, rescaling, half precision, argument validation;
- :mod:`.structure`: block structure of the dropped set, determinism;
- :mod:`.fraction`: the exact drop-fraction law and the sampled drop rate;
- :mod:`.scheduler`: the linear scheduler's ramp, resume and rejected arguments;
- :mod:`.runner`: the table of properties and :func:`run_property`.
"""
