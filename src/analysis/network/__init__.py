"""The clinic network: one mixed model fitted across clinics from sums over each clinic's clients."""
