"""The SavedModel export and its contract (``metadata.json``), and ensembles of exports."""
