"""Report step: the therapist's report, the peer report (HTML + PDF) and the findings bundle.

Modules: :mod:`.build` (I/O edge, ``run_report``), :mod:`.render` (deterministic
figures, templates, PDF), :mod:`.figures` (pure plotting), :mod:`.summary`
(the answer in words), :mod:`.therapist`, :mod:`.peer`, :mod:`.findings`,
:mod:`.provenance`. Templates and CSS live in ``templates/``.
"""
