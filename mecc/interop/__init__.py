"""Standards at the edge: FHIR R4 intake and CDS Hooks services."""
