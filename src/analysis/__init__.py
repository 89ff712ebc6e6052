"""Hip-knee outcomes: a clinic's session records turned into validated, modelled, reproducible evidence.

Pipeline steps, one module each: contract -> load -> validate -> join -> model -> report.
"""

__version__ = "0.1.0"
