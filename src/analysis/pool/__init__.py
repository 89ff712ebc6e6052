"""Share and pool: random-effects meta-analysis of several clinics' findings bundles.

meta     the estimators (pure numpy/scipy, checked against metafor)
bundle   read and check bundles (signature, schema, version, integrity, compatibility, duplicates)
checks   strict JSON and the plausibility of every number, count, period and copied string
registry the network's clinics.yaml (clinic id -> public key, label) and each bundle's signature against it
run      ``outcomes pool``: pool, write pooled.json / forest.svg / pooled.html / pooled.pdf
report   the pooled report (forest plot, HTML, PDF)
demo     a demo network of simulated clinics, each run through the pipeline and pooled (``make pool-demo``)
"""
