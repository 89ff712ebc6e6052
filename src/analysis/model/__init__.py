"""Model step: the primary mixed model, its secondary analyses and the estimator's self-check.

Modules
-------
prepare   analysis dataset -> one row per client x session of the primary outcome (:class:`PrimaryData`)
fit       robust mixed-model fitting with convergence/boundary/Hessian checks (:class:`MixedFit`)
primary   the primary comparison (hip-focused vs knee-focused pain trajectories)
secondary sensitivity and secondary analyses (imported by :mod:`run`)
run       the I/O edge: read the dataset, run everything, write reports/results/
selfcheck simulation study of the primary estimator (bias, SE, coverage, type-I error, power)
"""
