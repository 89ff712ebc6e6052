"""Share and pool: random-effects meta-analysis of several clinics' findings bundles.

meta     the estimators (pure numpy/scipy, checked against metafor)
bundle   read and check bundles (schema, version, integrity, compatibility, duplicates)
run      ``outcomes pool``: pool, write pooled.json / forest.svg / pooled.html / pooled.pdf
report   the pooled report (forest plot, HTML, PDF)
demo     a demo network of simulated clinics, each run through the pipeline and pooled (``make pool-demo``)
"""
