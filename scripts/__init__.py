"""Code referenced by the pancreas_ct_dualssl bundle configs (importable as ``scripts.<module>``)."""
